// The REST API, as the page uses it: JSON in and out, the bearer token from /auth/token.
//
// The token lives in localStorage, never in a URL (docs/web.md says why a bearer token read by
// fetch() and not a cookie). A 401 anywhere means the session is over: listeners of
// "switchboard:logged-out" show the login form again.

const TOKEN_KEY = "switchboard.token";

export function token() {
  return localStorage.getItem(TOKEN_KEY);
}

export function forgetToken() {
  localStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(status, body) {
    super(describeError(status, body));
    this.status = status;
    this.kind = body?.error ?? "HttpError";
    this.detail = body?.detail;
  }
}

function describeError(status, body) {
  const detail = body?.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    // FastAPI validation errors: where and what, never the submitted value.
    return detail.map((item) => `${(item.loc ?? []).slice(1).join(".") || "body"}: ${item.msg}`).join("; ");
  }
  return body?.error ? `${body.error} (HTTP ${status})` : `HTTP ${status}`;
}

export function authHeaders(extra = {}) {
  const headers = { ...extra };
  const current = token();
  if (current) headers.Authorization = `Bearer ${current}`;
  return headers;
}

// `api("/chats", {method: "POST", body: {...}})`: the parsed JSON answer (null for 204), or
// an ApiError carrying the API's `{error, detail}`.
export async function api(path, { method = "GET", body, headers = {}, signal } = {}) {
  const init = { method, headers: authHeaders({ Accept: "application/json", ...headers }), signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 204) return null;
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { error: "BadResponse", detail: text.slice(0, 200) };
  }
  if (!response.ok) {
    if (response.status === 401 && token()) {
      forgetToken();
      window.dispatchEvent(new CustomEvent("switchboard:logged-out"));
    }
    throw new ApiError(response.status, parsed);
  }
  return parsed;
}

export async function logIn(email, password) {
  const form = new URLSearchParams({ username: email, password });
  const response = await fetch("/auth/token", {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
    body: form,
  });
  const parsed = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, parsed);
  localStorage.setItem(TOKEN_KEY, parsed.access_token);
}

export async function register(email, password) {
  await api("/auth/register", { method: "POST", body: { email, password } });
  await logIn(email, password);
}

export function logOut() {
  forgetToken();
  window.dispatchEvent(new CustomEvent("switchboard:logged-out"));
}

export function currentUser() {
  return api("/users/me");
}
