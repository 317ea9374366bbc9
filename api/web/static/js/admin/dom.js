// What the admin modules share beyond ../dom.js: table cells, toggles and busy buttons.

import { el } from "../dom.js";

// A table cell: text, with `num` right-aligned figures and an optional class of its own.
export function cell(text, className = "") {
  return el("td", { class: className || undefined }, text === null || text === undefined ? "–" : String(text));
}

// A checkbox that calls `onChange(checked)`; while the call runs the box is disabled, and if it
// throws the box goes back to where it was and `onError(error)` shows why.
export function toggle(checked, onChange, { className, label, onError = console.error } = {}) {
  const box = el("input", { type: "checkbox", class: className, "aria-label": label });
  box.checked = Boolean(checked);
  box.addEventListener("change", async () => {
    const wanted = box.checked;
    box.disabled = true;
    try {
      await onChange(wanted);
    } catch (error) {
      box.checked = !wanted;
      onError(error);
    } finally {
      box.disabled = false;
    }
  });
  return box;
}

// Runs `fn` with `button` disabled (no double submit); errors reach the caller.
export async function busy(button, fn) {
  button.disabled = true;
  try {
    return await fn();
  } finally {
    button.disabled = false;
  }
}
