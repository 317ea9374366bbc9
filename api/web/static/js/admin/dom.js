// What the admin modules share: the page's DOM helpers (text in as text, never as HTML) plus
// tables, toggles and figures.

import { $, el, showError } from "../dom.js";
import { formatCost, formatMs } from "../format.js";

export { $, el, showError, formatCost, formatMs };

const integer = new Intl.NumberFormat("en-US");

export function formatCount(value) {
  return value === null || value === undefined ? "–" : integer.format(value);
}

export function formatRate(rate) {
  if (rate === null || rate === undefined) return "–";
  return `${(rate * 100).toFixed(rate > 0 && rate < 0.001 ? 2 : 1)}%`;
}

export function formatDate(iso) {
  if (!iso) return "–";
  return new Date(iso).toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
}

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
