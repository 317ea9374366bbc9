// Thumbs up or down on a finished reply. Clicking the pressed one again clears the rating;
// what is shown is always what the server answered (PUT /messages/{id}/rating).

import { api } from "../api.js";
import { el, showError } from "../dom.js";

// Triangles, not the thumb emoji: every system font has them (a machine without an emoji font
// would show empty boxes); the labels say thumbs up and down.
const UP = "▲";
const DOWN = "▼";

export class RatingButtons {
  constructor(messageId, rating) {
    this.messageId = messageId;
    this.rating = rating ?? null;
    this.busy = false;
    this.up = el("button", { type: "button", class: "rate-button rate-up", title: "Thumbs up: a good reply", "aria-label": "Thumbs up", onclick: () => this.rate(1) }, UP);
    this.down = el("button", { type: "button", class: "rate-button rate-down", title: "Thumbs down: a bad reply", "aria-label": "Thumbs down", onclick: () => this.rate(-1) }, DOWN);
    this.error = el("span", { class: "rate-error", role: "alert", hidden: true });
    this.node = el("div", { class: "reply-rating" }, this.up, this.down, this.error);
    this.render();
  }

  // The rating a stored reply carries; ignored while a click's answer is on its way (the row
  // read before it would undo the click on screen).
  set(rating) {
    if (this.busy) return;
    this.rating = rating ?? null;
    this.render();
  }

  render() {
    this.up.setAttribute("aria-pressed", String(this.rating === 1));
    this.down.setAttribute("aria-pressed", String(this.rating === -1));
    this.node.dataset.rating = this.rating === null ? "" : String(this.rating);
  }

  async rate(value) {
    if (this.busy) return;
    const rating = this.rating === value ? null : value;
    this.busy = true;
    this.up.disabled = this.down.disabled = true;
    showError(this.error, null);
    try {
      const message = await api(`/messages/${this.messageId}/rating`, { method: "PUT", body: { rating } });
      this.rating = message.rating ?? null;
      this.render();
    } catch (error) {
      showError(this.error, error);
    } finally {
      this.busy = false;
      this.up.disabled = this.down.disabled = false;
    }
  }
}
