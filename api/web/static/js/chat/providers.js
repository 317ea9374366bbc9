// The provider and model pickers: what GET /providers offers, kept current while the page is open
// (an admin may add or disable a provider at any time; the catalog changes without a restart).

import { api } from "../api.js";
import { fillSelect } from "../dom.js";

const REFRESH_MS = 15000;

export class ProviderCatalog {
  constructor() {
    this.providers = [];
    this.listeners = [];
    this.loading = null;
  }

  onChange(listener) {
    this.listeners.push(listener);
  }

  async refresh() {
    // One request at a time: focus events can come in bursts.
    this.loading ??= api("/providers")
      .then((providers) => {
        const changed = JSON.stringify(providers) !== JSON.stringify(this.providers);
        this.providers = providers;
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
    ];
  }

  modelOptions(providerName, defaultLabel) {
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

  render(provider, model) {
    fillSelect(this.providerSelect, this.catalog.providerOptions(this.labels.provider), provider);
    fillSelect(this.modelSelect, this.catalog.modelOptions(this.provider, this.labels.model), model);
  }

  // A chat's stored provider may have been disabled since: it stays selected, greyed, so the
  // user sees why, rather than silently switching to another one.
  set(provider, model) {
    this.render(provider ?? "", model ?? "");
    if (provider && this.provider !== provider) {
      this.providerSelect.value = provider;
      fillSelect(this.modelSelect, this.catalog.modelOptions(provider, this.labels.model), model ?? "");
    }
  }
}
