// How a reply was routed, when there is more to it than one target: each attempt (a fallback
// keeps the failed one, billed for what it used), whether the cache answered, and why the
// first target was chosen (a pool's pick, auto:cheapest's choice).

import { el } from "../dom.js";
import { formatCost, formatMs } from "../format.js";

export function hasRouteDetails(message) {
  return (message.attempts?.length ?? 0) > 1 || Boolean(message.cached) || Boolean(message.route?.why);
}

// A `<details>` listing the attempts, or null for a plain one-target reply.
export function attemptsDisclosure(message) {
  if (!hasRouteDetails(message)) return null;
  const attempts = message.attempts ?? [];
  const summary = attempts.length ? `${attempts.length} ${attempts.length === 1 ? "attempt" : "attempts"}` : "Route";
  return el(
    "details",
    { class: "reply-attempts" },
    el("summary", {}, summary),
    message.route?.why ? el("p", { class: "route-why" }, message.route.why) : null,
    attempts.length ? el("ol", { class: "attempt-list" }, attempts.map(attemptItem)) : null,
  );
}

function attemptItem(attempt) {
  const parts = [
    ["attempt-target", `${attempt.provider}/${attempt.model}`],
    ["attempt-status", attempt.status ?? "unknown"],
    ["attempt-cached badge", attempt.cached ? "cached" : null],
    ["attempt-tokens", attemptTokens(attempt)],
    ["attempt-ttft", attempt.time_to_first_token_ms != null ? `first token ${formatMs(attempt.time_to_first_token_ms)}` : null],
    ["attempt-cost", formatCost(attempt.cost)],
    ["attempt-error", attempt.error],
  ];
  return el(
    "li",
    { class: "attempt", dataset: { step: String(attempt.step), status: attempt.status ?? "" } },
    parts.filter(([, text]) => text).map(([name, text]) => el("span", { class: name }, text)),
  );
}

function attemptTokens(attempt) {
  if (attempt.prompt_tokens == null && attempt.completion_tokens == null) return null;
  return `${attempt.prompt_tokens ?? 0} in · ${attempt.completion_tokens ?? 0} out`;
}

// The note a `restart` event leaves where the reply started over on another target.
export function restartNote({ provider, model, reason }) {
  const where = [provider, model].filter(Boolean).join("/");
  return el("p", { class: "restart-note" }, `Restarted on ${where || "another provider"}: ${reason ?? "the previous target failed"}`);
}

// The same notes for a stored reply (after a reload): where a failed attempt had already
// streamed text, the reader saw it restart on the next one. One that failed before its first
// token was a transparent fallback, with nothing to note.
export function storedRestartNotes(message) {
  const attempts = message.attempts ?? [];
  return attempts.slice(1).flatMap((attempt, index) => {
    const failed = attempts[index];
    if (failed.status !== "failed" || !(failed.completion_tokens > 0)) return [];
    return [restartNote({ provider: attempt.provider, model: attempt.model, reason: failed.error })];
  });
}
