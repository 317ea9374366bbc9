// Users tab: users by email, a page at a time (GET /admin/users?limit=&offset=&q=), with the
// admin and active flags as toggles. The server paginates and counts: 10,000 users are 200
// pages here, never one long list.

import { api } from "../api.js";
import { $, el, showError } from "../dom.js";
import { formatCost, formatCount, formatDate } from "../format.js";
import { cell, toggle } from "./dom.js";

const PAGE = 25;
let offset = 0;
let query = "";
let count = 0;

export function init() {
  $("#users-search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    query = $("#users-search").value.trim();
    offset = 0;
    load();
  });
  $("#users-prev").addEventListener("click", () => {
    offset = Math.max(0, offset - PAGE);
    load();
  });
  $("#users-next").addEventListener("click", () => {
    if (offset + PAGE < count) offset += PAGE;
    load();
  });
}

export async function show() {
  await load();
}

export function hide() {}

async function load() {
  const errorNode = $("#users-error");
  const params = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
  if (query) params.set("q", query);
  let answer;
  try {
    answer = await api(`/admin/users?${params}`);
    showError(errorNode, null);
  } catch (error) {
    showError(errorNode, error);
    return;
  }
  count = answer.count;
  if (answer.data.length === 0 && offset > 0 && count > 0) {
    // The last page emptied (users filtered away): go back to the last page that has some.
    offset = Math.floor((count - 1) / PAGE) * PAGE;
    return load();
  }
  const body = $("#users-table tbody");
  body.replaceChildren(...answer.data.map(renderUser));
  if (answer.data.length === 0) body.append(el("tr", {}, el("td", { colSpan: 7, class: "muted small" }, "No users match.")));
  const first = count === 0 ? 0 : offset + 1;
  const last = offset + answer.data.length;
  $("#users-page").textContent = `${first}–${last} of ${formatCount(count)}`;
  $("#users-count").textContent = query ? `matching “${query}”` : "";
  $("#users-prev").disabled = offset === 0;
  $("#users-next").disabled = offset + PAGE >= count;
}

function renderUser(user) {
  const row = el("tr", { dataset: { userId: user.id, email: user.email } });
  const rowError = el("span", { class: "error small user-error", hidden: true });
  const flag = (field, label) =>
    toggle(
      user[field],
      async (on) => {
        showError(rowError, null);
        const fresh = await api(`/admin/users/${encodeURIComponent(user.id)}`, { method: "PATCH", body: { [field]: on } });
        Object.assign(user, fresh);
      },
      { className: `user-${field === "is_admin" ? "admin" : "active"}`, label: `${label} ${user.email}`, onError: (error) => showError(rowError, error) },
    );
  row.append(
    el("td", { class: "col-email" }, user.email, rowError),
    cell(formatDate(user.created_at), "muted small"),
    cell(formatCount(user.usage?.requests), "num"),
    cell(formatCount(user.usage?.total_tokens), "num"),
    cell(user.usage?.requests ? formatCost(user.usage.cost) : "–", "num"),
    el("td", {}, flag("is_admin", "Admin")),
    el("td", {}, flag("is_active", "Active")),
  );
  return row;
}
