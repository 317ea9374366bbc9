// System prompts: the picker in the chat head and the dialog that creates and edits them.

import { api } from "../api.js";
import { $, el, fillSelect, showError } from "../dom.js";

export class SystemPrompts {
  constructor({ select, dialog, onChange }) {
    this.select = select;
    this.dialog = dialog;
    this.onChange = onChange;
    this.prompts = [];
    this.form = $("#prompt-form", dialog);
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
    $("#prompt-new", dialog).addEventListener("click", () => this.edit(null));
    $("#prompt-delete", dialog).addEventListener("click", () => this.remove());
    $("#prompt-close", dialog).addEventListener("click", () => dialog.close());
  }

  get defaultPrompt() {
    return this.prompts.find((prompt) => prompt.is_default) ?? null;
  }

  async load() {
    this.prompts = (await api("/system-prompts?limit=200")).data;
    this.render(this.select.value);
  }

  render(selected) {
    fillSelect(
      this.select,
      [
        { value: "", label: "None" },
        ...this.prompts.map((prompt) => ({ value: prompt.id, label: prompt.is_default ? `${prompt.name} (default)` : prompt.name })),
      ],
      selected,
    );
    $("#prompt-list", this.dialog).replaceChildren(
      ...this.prompts.map((prompt) =>
        el(
          "li",
          { dataset: { promptId: prompt.id } },
          el("span", {}, prompt.is_default ? `${prompt.name} (default)` : prompt.name),
          el("button", { type: "button", class: "link prompt-edit", onclick: () => this.edit(prompt) }, "Edit"),
        ),
      ),
    );
  }

  open() {
    this.edit(null);
    this.dialog.showModal();
  }

  edit(prompt) {
    $("#prompt-id", this.dialog).value = prompt?.id ?? "";
    $("#prompt-name", this.dialog).value = prompt?.name ?? "";
    $("#prompt-content", this.dialog).value = prompt?.content ?? "";
    $("#prompt-default", this.dialog).checked = prompt?.is_default ?? false;
    $("#prompt-delete", this.dialog).hidden = !prompt;
    showError($("#prompt-error", this.dialog), null);
  }

  async save() {
    const id = $("#prompt-id", this.dialog).value;
    const body = {
      name: $("#prompt-name", this.dialog).value.trim(),
      content: $("#prompt-content", this.dialog).value,
      is_default: $("#prompt-default", this.dialog).checked,
    };
    try {
      const saved = id
        ? await api(`/system-prompts/${id}`, { method: "PATCH", body })
        : await api("/system-prompts", { method: "POST", body });
      await this.load();
      this.edit(this.prompts.find((prompt) => prompt.id === saved.id) ?? null);
    } catch (error) {
      showError($("#prompt-error", this.dialog), error);
    }
  }

  async remove() {
    const id = $("#prompt-id", this.dialog).value;
    if (!id) return;
    try {
      await api(`/system-prompts/${id}`, { method: "DELETE" });
      await this.load();
      this.edit(null);
      this.onChange?.();
    } catch (error) {
      showError($("#prompt-error", this.dialog), error);
    }
  }
}
