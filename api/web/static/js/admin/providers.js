// Providers tab: every provider with its models; enable, key (write-only), test, discover,
// prices; and the form that adds an OpenAI-compatible server.

import { api } from "../api.js";
import { $, el, showError } from "../dom.js";
import { busy, cell, toggle } from "./dom.js";

// Per provider, what the page learnt and the API does not keep: the last test and discovery.
const extra = new Map();
let providers = [];

function providerPath(name) {
  return `/admin/providers/${encodeURIComponent(name)}`;
}

// Model names hold ':' and '/' (llama3.1:8b, meta-llama/Llama-3-8B). Each path segment is
// escaped on its own and the '/' between them kept: the route takes the rest of the path as
// the name, so `/models/meta-llama/Llama-3-8B` reaches model "meta-llama/Llama-3-8B".
function modelPath(provider, model) {
  return `${providerPath(provider)}/models/${model.split("/").map(encodeURIComponent).join("/")}`;
}

function stateOf(name) {
  if (!extra.has(name)) extra.set(name, { test: null, discovered: null, error: null, busy: false });
  return extra.get(name);
}

export function init() {
  $("#providers-reload").addEventListener("click", () => load());
  $("#add-provider-form").addEventListener("submit", addProvider);
}

export async function show() {
  await load();
}

export function hide() {}

async function load() {
  const errorNode = $("#providers-error");
  try {
    const answer = await api("/admin/providers");
    providers = answer.data;
    showError(errorNode, null);
  } catch (error) {
    showError(errorNode, error);
    return;
  }
  $("#provider-list").replaceChildren(...providers.map(renderProvider));
}

async function reloadProvider(name) {
  const fresh = await api(providerPath(name));
  const index = providers.findIndex((p) => p.provider_name === name);
  if (index >= 0) providers[index] = fresh;
  else providers.push(fresh);
  rerender(name);
}

function rerender(name) {
  const provider = providers.find((p) => p.provider_name === name);
  const old = document.querySelector(`.provider-card[data-provider="${CSS.escape(name)}"]`);
  if (!provider) {
    old?.remove();
    return;
  }
  const card = renderProvider(provider);
  if (old) old.replaceWith(card);
  else $("#provider-list").append(card);
}

// Runs an action of one provider's card: its error shows in the card, the card is redrawn after.
async function act(name, fn, { reload = true } = {}) {
  const state = stateOf(name);
  state.error = null;
  try {
    await fn(state);
    if (reload) await reloadProvider(name);
    else rerender(name);
  } catch (error) {
    state.error = error;
    rerender(name);
  }
}

function renderProvider(provider) {
  const name = provider.provider_name;
  const state = stateOf(name);
  const card = el("article", { class: "card provider-card", dataset: { provider: name } });

  const status = provider.usable
    ? el("span", { class: "badge ok provider-status" }, "usable")
    : el("span", { class: "badge bad provider-status" }, `unusable: ${provider.unusable_reason ?? "unknown"}`);
  const enabled = toggle(provider.is_enabled, (on) => act(name, () => api(providerPath(name), { method: "PATCH", body: { is_enabled: on } })), {
    className: "provider-enabled",
    label: `Enable ${name}`,
  });
  card.append(
    el(
      "header",
      { class: "provider-head" },
      el("h3", {}, provider.display_name && provider.display_name !== name ? `${provider.display_name} (${name})` : name),
      el("span", { class: "badge" }, provider.adapter),
      el("span", { class: "badge muted" }, provider.source),
      status,
      el("label", { class: "inline provider-toggle" }, enabled, "Enabled"),
    ),
  );
  if (provider.api_endpoint) card.append(el("p", { class: "muted small provider-endpoint" }, provider.api_endpoint));

  const key = renderKey(provider);
  if (key) card.append(key);

  const testButton = el("button", { type: "button", class: "provider-test" }, "Test connection");
  testButton.addEventListener("click", () =>
    busy(testButton, () =>
      act(name, async (s) => {
        s.test = { pending: true };
        rerender(name);
        s.test = await api(`${providerPath(name)}/test`, { method: "POST" });
      }, { reload: false }),
    ),
  );
  const discoverButton = el("button", { type: "button", class: "provider-discover" }, "Discover models");
  discoverButton.addEventListener("click", () =>
    busy(discoverButton, () =>
      act(name, async (s) => {
        s.discovered = null;
        s.discovered = (await api(`${providerPath(name)}/discover`)).data;
      }, { reload: false }),
    ),
  );
  const actions = el("div", { class: "row provider-actions" }, testButton, renderTest(state.test), discoverButton);
  if (provider.source === "admin") actions.append(deleteButton(name));
  card.append(actions);
  if (state.discovered) card.append(renderDiscovered(name, state.discovered));
  card.append(renderModels(provider));
  const errorNode = el("p", { class: "error provider-error" });
  showError(errorNode, state.error);
  card.append(errorNode);
  return card;
}

// Two clicks: "Delete provider", then "Delete? Click again" (no confirm() dialog).
function deleteButton(name) {
  const button = el("button", { type: "button", class: "danger provider-delete" }, "Delete provider");
  let armed = false;
  button.addEventListener("click", () => {
    if (!armed) {
      armed = true;
      button.textContent = "Delete? Click again";
      return;
    }
    busy(button, async () => {
      const state = stateOf(name);
      try {
        await api(providerPath(name), { method: "DELETE" });
        providers = providers.filter((p) => p.provider_name !== name);
        extra.delete(name);
        rerender(name);
      } catch (error) {
        state.error = error;
        rerender(name);
      }
    });
  });
  button.addEventListener("blur", () => {
    armed = false;
    button.textContent = "Delete provider";
  });
  return button;
}

function renderKey(provider) {
  const name = provider.provider_name;
  const row = el("form", { class: "row provider-key", autocomplete: "off" });
  const fromSettings = provider.key_source === "environment" || provider.source === "environment";
  // An environment provider without a key setting (echo, ollama) takes no key at all.
  if (fromSettings && !provider.key_setting && !provider.api_key_set) return null;
  const described = provider.api_key_set ? `API key set ${provider.api_key_hint ?? ""}`.trim() : "No API key";
  row.append(el("span", { class: "provider-key-state" }, described));
  if (fromSettings) {
    row.append(el("span", { class: "muted small" }, `from the settings${provider.key_setting ? ` (${provider.key_setting})` : ""}`));
    return row;
  }
  // Write-only: the input starts empty, is never filled from an answer, and is cleared once sent.
  const input = el("input", {
    type: "password",
    class: "provider-key-input",
    autocomplete: "new-password",
    placeholder: provider.api_key_set ? "New API key" : "API key",
    "aria-label": `API key for ${name}`,
  });
  const save = el("button", { type: "submit", class: "provider-key-save" }, "Set key");
  row.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    input.value = "";
    busy(save, () => act(name, () => api(providerPath(name), { method: "PATCH", body: { api_key: key } })));
  });
  row.append(input, save);
  if (provider.api_key_set) {
    const remove = el("button", { type: "button", class: "danger provider-key-remove" }, "Remove key");
    remove.addEventListener("click", () =>
      busy(remove, () => act(name, () => api(providerPath(name), { method: "PATCH", body: { api_key: null } }))),
    );
    row.append(remove);
  }
  return row;
}

function renderTest(result) {
  const node = el("span", { class: "provider-test-result small" });
  if (!result) return node;
  if (result.pending) {
    node.textContent = "testing…";
    node.classList.add("muted");
  } else if (result.ok) {
    node.textContent = `ok · ${Math.round(result.latency_ms)} ms · ${result.models_listed ?? 0} models listed`;
    node.classList.add("ok");
    node.dataset.ok = "true";
  } else {
    const error = result.error ?? {};
    node.textContent = `failed · ${error.kind ?? "error"}: ${error.message ?? ""} (${Math.round(result.latency_ms ?? 0)} ms)`;
    node.classList.add("error-text");
    node.dataset.ok = "false";
  }
  return node;
}

function renderDiscovered(name, models) {
  const list = el("ul", { class: "provider-discover-list" });
  if (models.length === 0) list.append(el("li", { class: "muted small" }, "The provider lists no models."));
  for (const model of models) {
    const item = el("li", { dataset: { model: model.id } }, el("code", {}, model.id));
    const owner = model.details?.owned_by;
    if (owner) item.append(el("span", { class: "muted small" }, owner));
    if (model.added) {
      item.append(el("span", { class: "muted small" }, "added"));
    } else {
      const add = el("button", { type: "button", class: "discover-add" }, "Add");
      add.addEventListener("click", () =>
        busy(add, () =>
          act(name, async (s) => {
            await api(`${providerPath(name)}/models`, { method: "POST", body: { model_name: model.id } });
            model.added = true;
            s.discovered = models;
          }),
        ),
      );
      item.append(add);
    }
    list.append(item);
  }
  return list;
}

// "0.001500" reads as "0.0015" (the API answers exact decimals with every place).
function shortPrice(value) {
  if (value === null || value === undefined) return "";
  return value.includes(".") ? value.replace(/0+$/, "").replace(/\.$/, "") : value;
}

function priceInput(value, className, label) {
  const input = el("input", { type: "text", inputmode: "decimal", class: `price ${className}`, "aria-label": label, placeholder: "unpriced" });
  input.value = shortPrice(value);
  return input;
}

function renderModels(provider) {
  const name = provider.provider_name;
  const body = el("tbody");
  for (const model of provider.models ?? []) {
    const enabled = toggle(
      model.is_enabled,
      (on) => act(name, () => api(modelPath(name, model.model_name), { method: "PATCH", body: { is_enabled: on } })),
      { className: "model-enabled", label: `Enable ${model.model_name}` },
    );
    const input = priceInput(model.input_cost_per_1k_tokens, "model-input-price", `Input price of ${model.model_name}`);
    const output = priceInput(model.output_cost_per_1k_tokens, "model-output-price", `Output price of ${model.model_name}`);
    const save = el("button", { type: "button", class: "model-save-price" }, "Save");
    save.addEventListener("click", () => {
      const inputPrice = input.value.trim();
      const outputPrice = output.value.trim();
      const body = {
        input_cost_per_1k_tokens: inputPrice === "" ? null : inputPrice,
        output_cost_per_1k_tokens: outputPrice === "" ? null : outputPrice,
      };
      busy(save, () => act(name, () => api(modelPath(name, model.model_name), { method: "PATCH", body })));
    });
    body.append(
      el(
        "tr",
        { dataset: { model: model.model_name } },
        el("td", {}, el("code", {}, model.model_name)),
        cell(model.source, "muted small"),
        el("td", {}, enabled),
        cell(model.offered ? "yes" : "no", model.offered ? "ok" : "muted"),
        el("td", {}, input),
        el("td", {}, output),
        el("td", {}, save),
      ),
    );
  }
  if (!provider.models?.length) body.append(el("tr", {}, el("td", { colSpan: 7, class: "muted small" }, "No models yet.")));
  return el(
    "table",
    { class: "data-table provider-models" },
    el(
      "thead",
      {},
      el("tr", {}, ...["Model", "Source", "Enabled", "Offered", "Input $/1k", "Output $/1k", ""].map((h) => el("th", {}, h))),
    ),
    body,
  );
}

async function addProvider(event) {
  event.preventDefault();
  const errorNode = $("#add-provider-error");
  const statusNode = $("#add-provider-status");
  const keyInput = $("#add-provider-key");
  const models = $("#add-provider-models")
    .value.split(",")
    .map((m) => m.trim())
    .filter(Boolean);
  const body = {
    provider_name: $("#add-provider-name").value.trim(),
    adapter: "openai_compatible",
    api_endpoint: $("#add-provider-endpoint").value.trim(),
    models,
  };
  const key = keyInput.value.trim();
  if (key) body.api_key = key;
  showError(errorNode, null);
  statusNode.textContent = "adding…";
  try {
    await busy($("#add-provider-submit"), async () => {
      const created = await api("/admin/providers", { method: "POST", body });
      providers = providers.filter((p) => p.provider_name !== created.provider_name).concat(created);
      rerender(created.provider_name);
    });
    event.target.reset();
    statusNode.textContent = `Added ${body.provider_name}.`;
  } catch (error) {
    statusNode.textContent = "";
    showError(errorNode, error);
  } finally {
    keyInput.value = "";
  }
}
