// Routing tab: fallback chains, pools and A/B experiments (/admin/routing/*), with per-arm
// results side by side. The pickers offer the models the providers offer now
// (GET /providers); the server checks every target again and says why it refuses one.

import { api } from "../api.js";
import { $, el, fillSelect, showError } from "../dom.js";
import { formatCost, formatCount, formatMs, formatRate } from "../format.js";
import { busy, cell, toggle } from "./dom.js";

const ROUTING = "/admin/routing";
let targets = []; // [{provider, model}] offered now
let chainDraft = []; // the chain form's fallbacks, in order
let poolDraft = []; // the pool form's deployments: [{provider, model, weight, is_enabled}]
let resultsFor = null; // the experiment whose results show

// A provider name holds no '/', so "provider/model" splits at the first one.
const keyOf = (target) => `${target.provider}/${target.model}`;

function parseKey(value) {
  const cut = value.indexOf("/");
  return { provider: value.slice(0, cut), model: value.slice(cut + 1) };
}

// Model names hold ':' and '/': each segment escaped on its own, the '/' between them kept
// (the route takes the rest of the path as the model).
function chainPath(target) {
  return `${ROUTING}/chains/${encodeURIComponent(target.provider)}/${target.model.split("/").map(encodeURIComponent).join("/")}`;
}

const poolPath = (name) => `${ROUTING}/pools/${encodeURIComponent(name)}`;
const experimentPath = (id) => `${ROUTING}/experiments/${encodeURIComponent(id)}`;

export function init() {
  $("#routing-reload").addEventListener("click", () => load());

  $("#chain-add").addEventListener("click", () => {
    const value = $("#chain-add-target").value;
    if (!value) return;
    const target = parseKey(value);
    if (!chainDraft.some((t) => keyOf(t) === value)) chainDraft.push(target);
    renderChainDraft();
  });
  $("#chain-clear").addEventListener("click", () => resetChainForm());
  $("#chain-form").addEventListener("submit", saveChain);

  $("#pool-add").addEventListener("click", () => {
    const value = $("#pool-add-target").value;
    if (!value || poolDraft.some((d) => keyOf(d) === value)) return;
    const weight = Number($("#pool-add-weight").value) || 1;
    poolDraft.push({ ...parseKey(value), weight, is_enabled: true });
    renderPoolDraft();
  });
  $("#pool-clear").addEventListener("click", () => resetPoolForm());
  $("#pool-form").addEventListener("submit", savePool);

  $("#experiment-form").addEventListener("submit", createExperiment);
  $("#experiment-results-refresh").addEventListener("click", () => loadResults());
  $("#experiment-results-close").addEventListener("click", () => {
    resultsFor = null;
    $("#experiment-results").hidden = true;
  });
}

export async function show() {
  await load();
}

export function hide() {}

async function load() {
  const errorNode = $("#routing-error");
  try {
    await Promise.all([loadTargets(), loadChains(), loadPools(), loadExperiments()]);
    showError(errorNode, null);
  } catch (error) {
    showError(errorNode, error);
  }
}

async function loadTargets() {
  // The catalog as requests see it (GET /providers): exactly the targets the server accepts,
  // environment providers included whether or not their rows are loaded.
  const providers = await api("/providers");
  targets = providers
    .filter((p) => !p.unavailable_reason)
    .flatMap((p) => p.models.map((model) => ({ provider: p.name, model })));
  const options = targets.map((t) => ({ value: keyOf(t), label: `${t.provider} · ${t.model}` }));
  for (const id of ["#chain-primary", "#chain-add-target", "#pool-add-target", "#experiment-control", "#experiment-variant"]) {
    const select = $(id);
    fillSelect(select, options, select.value || undefined);
  }
}

function targetCode(target) {
  const node = el("span", { class: "target" }, el("code", {}, keyOf(target)));
  if (target.usable === false) node.append(el("span", { class: "badge bad", title: "Disabled: passed over" }, "unusable"));
  return node;
}

// Two clicks: the label, then "…? Click again" (no confirm() dialog).
function confirmButton(label, className, onConfirm) {
  const button = el("button", { type: "button", class: `danger ${className}` }, label);
  let armed = false;
  button.addEventListener("click", () => {
    if (!armed) {
      armed = true;
      button.textContent = `${label}? Click again`;
      return;
    }
    busy(button, onConfirm);
  });
  button.addEventListener("blur", () => {
    armed = false;
    button.textContent = label;
  });
  return button;
}

// A draft list item: the target, then its own controls, and up/down/remove.
function draftItem(list, index, render, content) {
  const move = (by) => {
    const [item] = list.splice(index, 1);
    list.splice(index + by, 0, item);
    render();
  };
  const up = el("button", { type: "button", class: "link draft-up", "aria-label": "Move up", disabled: index === 0 }, "↑");
  const down = el("button", { type: "button", class: "link draft-down", "aria-label": "Move down", disabled: index === list.length - 1 }, "↓");
  const remove = el("button", { type: "button", class: "link draft-remove", "aria-label": "Remove" }, "×");
  up.addEventListener("click", () => move(-1));
  down.addEventListener("click", () => move(1));
  remove.addEventListener("click", () => {
    list.splice(index, 1);
    render();
  });
  return el("li", { dataset: { target: keyOf(list[index]) } }, ...content, up, down, remove);
}

// -- chains -------------------------------------------------------------------------------

async function loadChains() {
  const answer = await api(`${ROUTING}/chains`);
  const body = $("#chains-table tbody");
  body.replaceChildren(...answer.data.map(renderChain));
  if (answer.data.length === 0) body.append(el("tr", {}, el("td", { colSpan: 3, class: "muted small" }, "No fallback chains.")));
}

function renderChain(chain) {
  const edit = el("button", { type: "button", class: "chain-edit" }, "Edit");
  edit.addEventListener("click", () => {
    $("#chain-primary").value = keyOf(chain);
    chainDraft = chain.targets.map(({ provider, model }) => ({ provider, model }));
    renderChainDraft();
    $("#chain-primary").focus();
  });
  const remove = confirmButton("Remove", "chain-remove", async () => {
    try {
      await api(chainPath(chain), { method: "DELETE" });
      await loadChains();
    } catch (error) {
      showError($("#chain-error"), error);
    }
  });
  return el(
    "tr",
    { dataset: { primary: keyOf(chain) } },
    el("td", {}, el("code", {}, keyOf(chain))),
    el("td", {}, el("ol", { class: "target-list chain-targets" }, ...chain.targets.map((t) => el("li", {}, targetCode(t))))),
    el("td", { class: "row-actions" }, edit, remove),
  );
}

function renderChainDraft() {
  const list = $("#chain-fallbacks");
  list.replaceChildren(...chainDraft.map((t, i) => draftItem(chainDraft, i, renderChainDraft, [el("code", {}, keyOf(t))])));
  if (chainDraft.length === 0) list.append(el("li", { class: "muted small" }, "Add the fallbacks in the order they are tried."));
}

function resetChainForm() {
  chainDraft = [];
  renderChainDraft();
  showError($("#chain-error"), null);
}

async function saveChain(event) {
  event.preventDefault();
  const errorNode = $("#chain-error");
  const status = $("#chain-status");
  const primary = parseKey($("#chain-primary").value);
  showError(errorNode, null);
  try {
    await busy($("#chain-save"), () => api(chainPath(primary), { method: "PUT", body: { targets: chainDraft } }));
    status.textContent = `Saved the chain of ${keyOf(primary)}.`;
    resetChainForm();
    await loadChains();
  } catch (error) {
    status.textContent = "";
    showError(errorNode, error);
  }
}

// -- pools --------------------------------------------------------------------------------

async function loadPools() {
  const answer = await api(`${ROUTING}/pools`);
  const body = $("#pools-table tbody");
  body.replaceChildren(...answer.data.flatMap(renderPool));
  if (answer.data.length === 0) body.append(el("tr", {}, el("td", { colSpan: 6, class: "muted small" }, "No pools.")));
}

function health(deployment) {
  if (deployment.cooling_down === null || deployment.cooling_down === undefined) return el("span", { class: "badge muted" }, "unknown");
  if (deployment.cooling_down) return el("span", { class: "badge bad" }, "cooling down");
  if (deployment.weight_factor < 1) return el("span", { class: "badge" }, `rate limited: weight ×${deployment.weight_factor.toFixed(2)}`);
  return el("span", { class: "badge ok" }, "healthy");
}

function renderPool(pool) {
  const edit = el("button", { type: "button", class: "pool-edit" }, "Edit");
  edit.addEventListener("click", () => {
    $("#pool-name").value = pool.name;
    poolDraft = pool.deployments.map(({ provider, model, weight, is_enabled }) => ({ provider, model, weight, is_enabled }));
    renderPoolDraft();
    $("#pool-name").focus();
  });
  const remove = confirmButton("Delete", "pool-delete", async () => {
    try {
      await api(poolPath(pool.name), { method: "DELETE" });
      await loadPools();
    } catch (error) {
      showError($("#pool-error"), error);
    }
  });
  return pool.deployments.map((d, i) =>
    el(
      "tr",
      { dataset: { pool: pool.name, target: keyOf(d) }, class: i === 0 ? "pool-first" : undefined },
      i === 0 ? el("td", { rowSpan: pool.deployments.length }, el("code", {}, pool.model)) : null,
      el("td", {}, targetCode(d)),
      cell(formatCount(d.weight), "num col-weight"),
      cell(d.is_enabled ? "yes" : "no", d.is_enabled ? "" : "muted"),
      el("td", { class: "col-health" }, health(d)),
      i === 0 ? el("td", { rowSpan: pool.deployments.length, class: "row-actions" }, edit, remove) : null,
    ),
  );
}

function renderPoolDraft() {
  const list = $("#pool-deployments");
  list.replaceChildren(
    ...poolDraft.map((d, i) => {
      const weight = el("input", { type: "number", min: "1", max: "1000", step: "1", class: "weight", "aria-label": `Weight of ${keyOf(d)}` });
      weight.value = String(d.weight);
      weight.addEventListener("change", () => {
        d.weight = Number(weight.value);
      });
      const enabled = el("input", { type: "checkbox", "aria-label": `Enable ${keyOf(d)}` });
      enabled.checked = d.is_enabled;
      enabled.addEventListener("change", () => {
        d.is_enabled = enabled.checked;
      });
      return draftItem(poolDraft, i, renderPoolDraft, [
        el("code", {}, keyOf(d)),
        el("label", { class: "inline" }, "weight", weight),
        el("label", { class: "inline" }, enabled, "enabled"),
      ]);
    }),
  );
  if (poolDraft.length === 0) list.append(el("li", { class: "muted small" }, "Add the pool's deployments, each with a weight."));
}

function resetPoolForm() {
  poolDraft = [];
  renderPoolDraft();
  showError($("#pool-error"), null);
}

async function savePool(event) {
  event.preventDefault();
  const errorNode = $("#pool-error");
  const status = $("#pool-status");
  const name = $("#pool-name").value.trim();
  showError(errorNode, null);
  try {
    await busy($("#pool-save"), () => api(poolPath(name), { method: "PUT", body: { deployments: poolDraft } }));
    status.textContent = `Saved pool:${name}.`;
    $("#pool-name").value = "";
    resetPoolForm();
    await loadPools();
  } catch (error) {
    status.textContent = "";
    showError(errorNode, error);
  }
}

// -- experiments --------------------------------------------------------------------------

async function loadExperiments() {
  const answer = await api(`${ROUTING}/experiments`);
  const body = $("#experiments-table tbody");
  body.replaceChildren(...answer.data.map(renderExperiment));
  if (answer.data.length === 0) body.append(el("tr", {}, el("td", { colSpan: 6, class: "muted small" }, "No experiments.")));
  if (resultsFor && !answer.data.some((e) => e.id === resultsFor.id)) {
    resultsFor = null;
    $("#experiment-results").hidden = true;
  }
}

function renderExperiment(experiment) {
  const errorNode = $("#experiments-error");
  const active = toggle(
    experiment.is_active,
    async (on) => {
      showError(errorNode, null);
      Object.assign(experiment, await api(experimentPath(experiment.id), { method: "PATCH", body: { is_active: on } }));
    },
    { className: "experiment-active", label: `Active: ${experiment.name}`, onError: (error) => showError(errorNode, error) },
  );
  const results = el("button", { type: "button", class: "experiment-show-results" }, "Results");
  results.addEventListener("click", () => {
    resultsFor = experiment;
    loadResults();
  });
  const remove = confirmButton("Delete", "experiment-delete", async () => {
    try {
      await api(experimentPath(experiment.id), { method: "DELETE" });
      await loadExperiments();
    } catch (error) {
      showError(errorNode, error);
    }
  });
  return el(
    "tr",
    { dataset: { experimentId: String(experiment.id), name: experiment.name } },
    el("td", { class: "col-name" }, experiment.name),
    el("td", { class: "col-control" }, targetCode(experiment.control)),
    el("td", { class: "col-variant" }, targetCode(experiment.variant)),
    cell(formatRate(experiment.variant_share), "num col-share"),
    el("td", {}, active),
    el("td", { class: "row-actions" }, results, remove),
  );
}

async function createExperiment(event) {
  event.preventDefault();
  const errorNode = $("#experiment-error");
  const status = $("#experiment-status");
  const share = Number($("#experiment-share").value);
  const body = {
    name: $("#experiment-name").value.trim(),
    control: parseKey($("#experiment-control").value),
    variant: parseKey($("#experiment-variant").value),
    variant_share: share / 100,
    is_active: $("#experiment-active").checked,
  };
  showError(errorNode, null);
  try {
    await busy($("#experiment-create"), () => api(`${ROUTING}/experiments`, { method: "POST", body }));
    status.textContent = `Created ${body.name}.`;
    $("#experiment-name").value = "";
    await loadExperiments();
  } catch (error) {
    status.textContent = "";
    showError(errorNode, error);
  }
}

// Each line of the results table: a label and the figure of one arm.
const RESULT_LINES = [
  ["target", "Target", (a) => `${a.provider}/${a.model}`],
  ["chats", "Chats", (a) => formatCount(a.chats)],
  ["requests", "Requests", (a) => formatCount(a.requests)],
  ["prompt_tokens", "Prompt tokens", (a) => formatCount(a.prompt_tokens)],
  ["completion_tokens", "Completion tokens", (a) => formatCount(a.completion_tokens)],
  ["cost", "Cost", (a) => (a.requests ? formatCost(a.cost) : "–")],
  ["error_rate", "Error rate", (a) => (a.requests ? formatRate(a.error_rate) : "–")],
  ["cached_requests", "Cached requests", (a) => formatCount(a.cached_requests)],
  ["response_time_ms_p50", "Latency p50", (a) => formatMs(a.response_time_ms_p50)],
  ["response_time_ms_p95", "Latency p95", (a) => formatMs(a.response_time_ms_p95)],
  ["time_to_first_token_ms_p50", "First token p50", (a) => formatMs(a.time_to_first_token_ms_p50)],
  ["time_to_first_token_ms_p95", "First token p95", (a) => formatMs(a.time_to_first_token_ms_p95)],
  ["ratings_up", "Thumbs up", (a) => formatCount(a.ratings_up)],
  ["ratings_down", "Thumbs down", (a) => formatCount(a.ratings_down)],
];

async function loadResults() {
  if (!resultsFor) return;
  const panel = $("#experiment-results");
  const errorNode = $("#experiment-results-error");
  panel.hidden = false;
  $("#experiment-results-title").textContent = `Results: ${resultsFor.name}`;
  let answer;
  try {
    answer = await api(`${experimentPath(resultsFor.id)}/results`);
    showError(errorNode, null);
  } catch (error) {
    showError(errorNode, error);
    return;
  }
  const arms = Object.fromEntries(answer.arms.map((a) => [a.arm, a]));
  const table = $("#experiment-results-table");
  table.dataset.experimentId = String(answer.experiment.id);
  table.tBodies[0].replaceChildren(
    ...RESULT_LINES.map(([metric, label, figure]) =>
      el(
        "tr",
        { dataset: { metric } },
        el("th", { scope: "row" }, label),
        cell(arms.control ? figure(arms.control) : null, "num arm-control"),
        cell(arms.variant ? figure(arms.variant) : null, "num arm-variant"),
      ),
    ),
  );
}
