// Analytics tab: requests, tokens, cost and p95 latency per day by provider or by model
// (uPlot charts), a table per provider and model, and the top users. Everything is aggregated by the server
// (GET /admin/usage): the page never receives usage rows, only groups.

import { api } from "../api.js";
import { $, el, showError } from "../dom.js";
import { formatCost, formatCount, formatMs, formatRate } from "../format.js";
import { cell } from "./dom.js";

const TOP_USERS = 10;
const DAY = 86400;
const COLOURS = ["#2f6fed", "#1f8a4c", "#c0362c", "#b8860b", "#8a2be2", "#0f8b8d", "#d2691e", "#708090"];
const money = (v) => (v === 0 ? "$0" : `$${v.toFixed(v < 0.01 ? 6 : v < 1 ? 4 : 2)}`);
const count = (v) => formatCount(Math.round(v));
// Each chart: one line per provider (or model); `figure` of a (day, line) group, `gap`: the
// value of a day without usage (0 for sums; null, no point, for latency).
const CHARTS = [
  { id: "chart-requests", figure: (g) => g.requests, gap: 0, format: count },
  { id: "chart-tokens", figure: (g) => g.total_tokens, gap: 0, format: count },
  { id: "chart-cost", figure: (g) => (g.cost === null ? 0 : Number(g.cost)), gap: 0, format: money },
  { id: "chart-latency", figure: (g) => g.response_time_ms_p95, gap: null, format: (v) => formatMs(v) ?? "–", additive: false },
];

const plots = new Map();
let loading = null;
let resizeTimer = null;

export function init() {
  $("#analytics-range").addEventListener("change", () => load());
  $("#analytics-lines").addEventListener("change", () => load());
  $("#analytics-refresh").addEventListener("click", () => load());
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(resizeCharts, 150);
  });
}

export async function show() {
  await load();
}

export function hide() {}

// The range: whole UTC days, today included; `to` is left to the server (now).
function range(days) {
  const now = new Date();
  const todayStart = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()) / 1000;
  const start = todayStart - (days - 1) * DAY;
  const from = new Date(start * 1000).toISOString().slice(0, 19); // UTC, no offset
  return { start, days, from };
}

function usage(params) {
  return api(`/admin/usage?${new URLSearchParams(params)}`);
}

async function load() {
  // One load at a time; a second request while one runs waits for it and then loads again.
  if (loading) {
    await loading.catch(() => {});
  }
  loading = fetchAndRender();
  try {
    await loading;
  } finally {
    loading = null;
  }
}

async function fetchAndRender() {
  const days = Number($("#analytics-range").value);
  const byModel = $("#analytics-lines").value === "model";
  const { start, from } = range(days);
  const status = $("#analytics-status");
  const errorNode = $("#analytics-error");
  status.textContent = "loading…";
  try {
    const [perDay, perModel, perUser] = await Promise.all([
      usage({ group_by: byModel ? "day,provider,model" : "day,provider", from }),
      usage({ group_by: "provider,model", from }),
      usage({ group_by: "user", from, order: "cost", limit: String(TOP_USERS) }),
    ]);
    showError(errorNode, null);
    drawCharts(perDay.data, start, days, byModel ? (g) => `${g.provider} · ${g.model}` : (g) => g.provider);
    fillModels(perModel.data);
    fillUsers(perUser.data.slice(0, TOP_USERS));
    status.textContent = `${days} days from ${from.slice(0, 10)} (UTC)`;
  } catch (error) {
    status.textContent = "";
    showError(errorNode, error);
  }
}

function dayIndex(day, start) {
  const [y, m, d] = day.split("-").map(Number);
  return Math.round((Date.UTC(y, m - 1, d) / 1000 - start) / DAY);
}

function drawCharts(groups, start, days, lineOf) {
  const xs = Array.from({ length: days }, (_, i) => start + i * DAY);
  const names = [...new Set(groups.map(lineOf))].sort();
  for (const chart of CHARTS) {
    const series = names.map(() => new Array(days).fill(chart.gap));
    let total = 0;
    for (const group of groups) {
      const i = dayIndex(group.day, start);
      if (i < 0 || i >= days) continue;
      const value = chart.figure(group); // one group per (day, line)
      series[names.indexOf(lineOf(group))][i] = value;
      if (chart.additive !== false) total += value ?? 0;
    }
    draw(chart, xs, names, series, total);
  }
}

function draw(chart, xs, names, series, total) {
  const target = document.getElementById(chart.id);
  plots.get(chart.id)?.destroy();
  plots.delete(chart.id);
  target.replaceChildren();
  // What the chart shows, for tests and for anyone reading the DOM.
  target.dataset.lines = names.join(",");
  if (chart.additive !== false) target.dataset.total = String(Math.round(total * 1e6) / 1e6);
  if (!window.uPlot) {
    target.append(el("p", { class: "error" }, "The chart library did not load."));
    return;
  }
  if (names.length === 0) target.append(el("p", { class: "muted small chart-empty" }, "No usage in this range."));
  const options = {
    width: chartWidth(target),
    height: 220,
    tzDate: (ts) => window.uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
    scales: { x: { time: true } },
    series: [
      { label: "Day (UTC)", value: (u, ts) => (ts === null ? "–" : new Date(ts * 1000).toISOString().slice(0, 10)) },
      ...names.map((name, i) => ({
        label: name,
        stroke: COLOURS[i % COLOURS.length],
        width: 2,
        points: { show: xs.length <= 31 },
        value: (u, v) => (v === null ? "–" : chart.format(v)),
      })),
    ],
    axes: [{}, { size: 70, values: (u, ticks) => ticks.map((v) => chart.format(v)) }],
  };
  plots.set(chart.id, new window.uPlot(options, [xs, ...series], target));
}

function chartWidth(target) {
  return Math.max(280, (target.clientWidth || target.parentElement.clientWidth || 600) - 4);
}

function resizeCharts() {
  for (const [id, plot] of plots) {
    plot.setSize({ width: chartWidth(document.getElementById(id)), height: 220 });
  }
}

function fillModels(groups) {
  const rows = [...groups].sort((a, b) => b.requests - a.requests || a.provider.localeCompare(b.provider) || a.model.localeCompare(b.model));
  const body = $("#analytics-models tbody");
  body.replaceChildren(
    ...rows.map((g) =>
      el(
        "tr",
        { dataset: { provider: g.provider, model: g.model } },
        cell(g.provider, "col-provider"),
        el("td", { class: "col-model" }, el("code", {}, g.model)),
        cell(formatCount(g.requests), "num col-requests"),
        cell(formatCount(g.total_tokens), "num col-tokens"),
        cell(formatCost(g.cost), "num col-cost"),
        cell(formatRate(g.error_rate), "num col-error-rate"),
        cell(formatMs(g.response_time_ms_p95), "num col-latency-p95"),
        cell(formatMs(g.time_to_first_token_ms_p95), "num col-ttft-p95"),
      ),
    ),
  );
  if (rows.length === 0) body.append(emptyRow(8));
}

function fillUsers(groups) {
  const body = $("#analytics-users tbody");
  body.replaceChildren(
    ...groups.map((g) =>
      el(
        "tr",
        { dataset: { userId: g.user_id } },
        cell(g.user_email ?? g.user_id, "col-user"),
        cell(formatCount(g.requests), "num col-requests"),
        cell(formatCount(g.total_tokens), "num col-tokens"),
        cell(formatCost(g.cost), "num col-cost"),
        cell(formatRate(g.error_rate), "num col-error-rate"),
      ),
    ),
  );
  if (groups.length === 0) body.append(emptyRow(5));
}

function emptyRow(columns) {
  return el("tr", {}, el("td", { colSpan: columns, class: "muted small" }, "No usage in this range."));
}
