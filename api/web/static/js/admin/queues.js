// Queues tab: queue depth per provider (GET /admin/queues), refreshed every 5 s while the tab
// is shown and the browser tab visible, with a link to Flower.

import { api } from "../api.js";
import { $, el, showError } from "../dom.js";
import { formatCount } from "../format.js";
import { cell } from "./dom.js";

const REFRESH_MS = 5000;
let active = false;
let timer = null;

export function init() {
  document.addEventListener("visibilitychange", () => {
    if (!active) return;
    if (document.visibilityState === "visible") refresh();
    else stop();
  });
}

export async function show() {
  active = true;
  await refresh();
}

export function hide() {
  active = false;
  stop();
}

function stop() {
  clearTimeout(timer);
  timer = null;
}

function schedule() {
  stop();
  if (active && document.visibilityState === "visible") timer = setTimeout(refresh, REFRESH_MS);
}

async function refresh() {
  const status = $("#queues-status");
  const errorNode = $("#queues-error");
  let again = true;
  try {
    const answer = await api("/admin/queues");
    showError(errorNode, null);
    render(answer);
    status.textContent = `${answer.broker_up === false ? "broker down · " : ""}updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    if (error.status === 404) {
      status.textContent = "";
      $("#queues-table tbody").replaceChildren(
        el("tr", {}, el("td", { colSpan: 5, class: "muted" }, "Queue figures are not available on this server.")),
      );
      $("#queues-table").dataset.available = "false";
      again = false; // an older server: nothing to poll
      return;
    }
    showError(errorNode, error);
  } finally {
    if (again) schedule();
  }
}

function render(answer) {
  const flower = $("#queues-flower");
  // Only an http(s) address becomes a link (never javascript: or the like).
  const url = /^https?:\/\//i.test(answer.flower_url ?? "") ? answer.flower_url : null;
  flower.hidden = !url;
  if (url) flower.href = url;
  const table = $("#queues-table");
  table.dataset.available = "true";
  const rows = answer.data ?? [];
  table.tBodies[0].replaceChildren(
    ...rows.map((q) =>
      el(
        "tr",
        { dataset: { provider: q.provider ?? "", queue: q.queue } },
        cell(q.provider ?? "–", "col-provider"),
        el("td", { class: "col-queue" }, el("code", {}, q.queue)),
        cell(formatCount(q.depth), "num col-depth"),
        cell(formatCount(q.queued), "num col-queued"),
        cell(formatCount(q.running), "num col-running"),
      ),
    ),
  );
  if (rows.length === 0) table.tBodies[0].append(el("tr", {}, el("td", { colSpan: 5, class: "muted small" }, "No queues.")));
}
