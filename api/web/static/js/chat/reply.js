// One assistant reply on the page: its text as it streams, its figures once it is final.
//
// The text shown is built from the reply's stream events only, from the first event on (the
// stream replays from the start), so a reload or a reconnect shows exactly the stored text:
// nothing lost, nothing twice. A reconnect resumes after the last event id seen.

import { api } from "../api.js";
import { el } from "../dom.js";
import { formatCost, formatMs, formatTokens } from "../format.js";
import { loadMarkdown, markdownLoaded, renderMarkdown } from "../markdown.js";
import { readReplyStream } from "../sse.js";
import { attemptsDisclosure, restartNote, storedRestartNotes } from "./attempts.js";
import { RatingButtons } from "./rating.js";

const FINAL = new Set(["completed", "failed", "cancelled"]);
const RECONNECT_MS = [250, 500, 1000, 2000, 5000];

export class ReplyView {
  constructor(message, { onRetry, onFinal }) {
    this.message = message;
    this.onRetry = onRetry;
    this.onFinal = onFinal;
    this.text = "";
    this.lastEventId = null;
    this.controller = null;
    this.renderQueued = false;
    this.stopped = false;
    this.restarted = false; // a live `restart` event left its note
    this.body = el("div", { class: "message-body" });
    this.notes = el("div", { class: "message-notes" });
    this.meta = el("div", { class: "message-meta" });
    this.errorLine = el("div", { class: "message-error", hidden: true });
    this.route = el("div", { class: "message-route" });
    this.ratingButtons = new RatingButtons(message.id, message.rating);
    this.retry = el("button", { type: "button", class: "retry-button link", hidden: true, onclick: () => this.onRetry(this) }, "Retry");
    this.node = el(
      "article",
      { class: "message", dataset: { role: "assistant", messageId: message.id } },
      this.notes,
      this.body,
      this.errorLine,
      this.meta,
      this.route,
      el("div", { class: "message-actions" }, this.ratingButtons.node, this.retry),
    );
    this.show(message);
  }

  get id() {
    return this.message.id;
  }

  get status() {
    return this.message.status;
  }

  get isFinal() {
    return FINAL.has(this.message.status);
  }

  // A stored reply: final ones show their stored text; the others stream.
  show(message) {
    this.message = message;
    this.node.dataset.status = message.status ?? "";
    if (this.isFinal) {
      this.text = message.content ?? "";
      this.renderText();
      this.body.classList.remove("cursor");
    } else {
      this.body.classList.add("cursor");
    }
    this.renderMeta();
    this.renderRoute();
    this.ratingButtons.set(message.rating);
    this.ratingButtons.node.hidden = !this.isFinal;
    this.errorLine.textContent = message.error ?? "";
    this.errorLine.hidden = !(message.status === "failed" && message.error);
    this.retry.hidden = message.status !== "failed";
  }

  renderMeta() {
    const message = this.message;
    const parts = [
      ["message-status", message.status],
      ["meta-provider", message.provider],
      ["meta-model", message.model],
      ["meta-cached badge", message.cached ? "cached" : null],
      ["meta-tokens", formatTokens(message.usage)],
      ["meta-cost", this.isFinal && message.usage ? formatCost(message.cost) : null],
      ["meta-ttft", message.time_to_first_token_ms != null ? `first token ${formatMs(message.time_to_first_token_ms)}` : null],
      ["meta-duration", message.response_time_ms != null ? `took ${formatMs(message.response_time_ms)}` : null],
    ];
    this.meta.replaceChildren(
      ...parts.filter(([, text]) => text).map(([name, text]) => el("span", { class: name }, text)),
    );
  }

  // The attempts (kept open across re-renders), and the restart notes of a stored reply.
  renderRoute() {
    const wasOpen = this.route.querySelector("details")?.open ?? false;
    const details = attemptsDisclosure(this.message);
    if (details) details.open = wasOpen;
    this.route.replaceChildren(...(details ? [details] : []));
    if (this.isFinal && !this.restarted) this.notes.replaceChildren(...storedRestartNotes(this.message));
  }

  renderText() {
    this.body.replaceChildren(renderMarkdown(this.text));
    if (!markdownLoaded()) loadMarkdown().then(() => this.scheduleRender(), () => {});
  }

  // Markdown is re-rendered at most once a frame, however fast tokens come.
  scheduleRender() {
    if (this.renderQueued) return;
    this.renderQueued = true;
    requestAnimationFrame(() => {
      this.renderQueued = false;
      this.renderText();
      this.node.dispatchEvent(new CustomEvent("reply:grew", { bubbles: true }));
    });
  }

  // Reads the stream until the reply is final; reconnects (resuming) when the connection ends
  // early or fails. `stop()` ends the reading, not the reply.
  async follow() {
    if (this.isFinal || this.controller) return;
    let failures = 0;
    while (!this.isFinal && !this.stopped) {
      const controller = (this.controller = new AbortController());
      try {
        await readReplyStream(this.id, {
          lastEventId: this.lastEventId,
          signal: controller.signal,
          onEvent: (event) => this.handle(event),
        });
        failures = 0;
      } catch (error) {
        if (this.stopped || error.status === 401) break; // logged out: nothing to resume
        if (error.status === 404) {
          this.show({ ...this.message, status: "failed", error: "This reply no longer exists" });
          break;
        }
        if (error.status >= 400 && error.status < 500 && error.status !== 408 && error.status !== 429) {
          // The id we resume after was refused: start over from the first event.
          this.lastEventId = null;
          this.text = "";
          this.notes.replaceChildren();
          this.restarted = false;
        }
        if (!controller.signal.aborted) failures += 1;
      }
      // An abort to reconnect resumes at once; anything else waits a little longer each time.
      if (!this.isFinal && !controller.signal.aborted) {
        await sleep(RECONNECT_MS[Math.min(failures, RECONNECT_MS.length - 1)]);
      }
    }
    this.controller = null;
  }

  // Resume now (after the last event seen), e.g. when a background tab becomes visible again and
  // the connection may have been dropped while the browser throttled it.
  reconnect() {
    if (!this.isFinal) this.controller?.abort();
  }

  stop() {
    this.stopped = true;
    this.controller?.abort();
  }

  handle(event) {
    if (event.id) this.lastEventId = event.id;
    const { type, data } = event;
    if (type === "token") {
      if (this.message.status === "queued") this.show({ ...this.message, status: "running" });
      this.text += data.delta ?? "";
      this.scheduleRender();
    } else if (type === "reset" || type === "restart") {
      this.text = "";
      if (type === "restart") {
        this.restarted = true;
        this.notes.append(restartNote(data));
      }
      this.scheduleRender();
    } else if (type === "done" || type === "error") {
      this.finish(data);
    }
  }

  async finish(data) {
    const status = data.status ?? (data.error ? "failed" : "completed");
    this.show({
      ...this.message,
      status,
      content: this.text,
      usage: data.usage ?? this.message.usage,
      cost: data.cost ?? null,
      error: data.error ?? null,
    });
    this.node.dispatchEvent(new CustomEvent("reply:grew", { bubbles: true }));
    // The stored row has what the stream does not carry (time to first token, duration).
    try {
      this.show(await api(`/messages/${this.id}`));
    } catch {
      // The figures from the end event stay.
    }
    this.onFinal?.(this);
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
