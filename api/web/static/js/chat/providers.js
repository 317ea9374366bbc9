// The provider and model pickers: what GET /providers offers, kept current while the page is open
// (an admin may add or disable a provider at any time; the catalog changes without a restart).

import { api } from "../api.js";
import { fillSelect } from "../dom.js";

const REFRESH_MS = 15000;
// The picker's pseudo provider for the virtual models of GET /routes (pool:<name>,
// auto:cheapest): they are asked for by model alone, and the route picks the provider.
export const ROUTES = "routes";

export class ProviderCatalog {
  constructor() {
    this.providers = [];
    this.routes = [];
    this.listeners = [];
    this.loading = null;
  }

  onChange(listener) {
    this.listeners.push(listener);
  }

  async refresh() {
    // One request at a time: focus events can come in bursts.
    this.loading ??= Promise.all([api("/providers"), api("/routes")])
      .then(([providers, routes]) => {
        const changed = JSON.stringify([providers, routes]) !== JSON.stringify([this.providers, this.routes]);
        this.providers = providers;
        this.routes = routes;
        if (changed) for (const listener of this.listeners) listener();
      })
      .finally(() => {
        this.loading = null;
      });
    return this.loading;
  }

  keepFresh() {
    setInterval(() => document.visibilityState === "visible" && this.refresh().catch(() => {}), REFRESH_MS);
  }

  get(name) {
    return this.providers.find((provider) => provider.name === name);
  }

  static reason(provider) {
    if (provider.unavailable_reason) return provider.unavailable_reason;
    return provider.is_enabled ? null : "disabled";
  }

  providerOptions(defaultLabel) {
    return [
      { value: "", label: defaultLabel },
      ...this.providers.map((provider) => {
        const reason = ProviderCatalog.reason(provider);
        const name = provider.display_name || provider.name;
        return {
          value: provider.name,
          label: reason ? `${name} (${reason})` : name,
          disabled: Boolean(reason),
          title: reason ?? undefined,
        };
      }),
      ...(this.routes.length ? [{ value: ROUTES, label: "Routing (pools, cheapest)" }] : []),
    ];
  }

  modelOptions(providerName, defaultLabel) {
    if (providerName === ROUTES) {
      return [
        { value: "", label: "Pick a route" },
        ...this.routes.map((route) => ({ value: route.model, label: route.model, title: route.description })),
      ];
    }
    const provider = this.get(providerName);
    const models = provider ? provider.models : [];
    const label = provider?.default_model ? `${defaultLabel} (${provider.default_model})` : defaultLabel;
    return [{ value: "", label }, ...models.map((model) => ({ value: model, label: model }))];
  }
}

// A provider <select> and the model <select> that follows it.
export class ProviderPicker {
  constructor(catalog, providerSelect, modelSelect, labels) {
    this.catalog = catalog;
    this.providerSelect = providerSelect;
    this.modelSelect = modelSelect;
    this.labels = labels;
    this.render("", "");
    catalog.onChange(() => this.render(this.provider, this.model));
    providerSelect.addEventListener("change", () => this.render(this.provider, ""));
    // Opening the list asks for the newest catalog.
    providerSelect.addEventListener("focus", () => catalog.refresh().catch(() => {}));
  }

  get provider() {
    return this.providerSelect.value;
  }

  get model() {
    return this.modelSelect.value;
  }

  // What a request body carries for this choice: a route is asked for by its model alone.
  get selection() {
    if (this.provider === ROUTES) return this.model ? { model: this.model } : {};
    if (!this.provider) return {};
    return this.model ? { provider: this.provider, model: this.model } : { provider: this.provider };
  }

  render(provider, model) {
    fillSelect(this.providerSelect, this.catalog.providerOptions(this.labels.provider), provider);
    fillSelect(this.modelSelect, this.catalog.modelOptions(this.provider, this.labels.model), model);
  }

  // A chat's stored provider may have been disabled since: it stays selected, greyed, so the
  // user sees why, rather than silently switching to another one.
  set(provider, model) {
    if (!provider && model && this.catalog.routes.some((route) => route.model === model)) provider = ROUTES;
    this.render(provider ?? "", model ?? "");
    if (provider && this.provider !== provider) {
      this.providerSelect.value = provider;
      fillSelect(this.modelSelect, this.catalog.modelOptions(provider, this.labels.model), model ?? "");
    }
  }
}
