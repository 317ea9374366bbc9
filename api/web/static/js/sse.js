// A reply's Server-Sent Events stream, read with fetch() so that the bearer token travels in a
// header (EventSource cannot send one, and the token must never be in a URL).
//
// `readReplyStream` resumes after `lastEventId` when given, exactly as EventSource would with
// Last-Event-ID, and reports every event with its id so the caller can resume again later.

import { ApiError, authHeaders } from "./api.js";

// Parses "field: value" lines into events (https://html.spec.whatwg.org/#event-stream-interpretation).
export class EventStreamParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.reset();
  }

  reset() {
    this.id = null;
    this.event = "";
    this.data = [];
  }

  push(chunk) {
    this.buffer += chunk;
    let newline;
    while ((newline = this.buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = this.buffer.slice(0, newline);
      const width = this.buffer.startsWith("\r\n", newline) ? 2 : 1;
      this.buffer = this.buffer.slice(newline + width);
      this.line(line);
    }
  }

  line(line) {
    if (line === "") {
      if (this.data.length) {
        this.onEvent({ id: this.id, event: this.event || "message", data: this.data.join("\n") });
      }
      this.reset();
      return;
    }
    if (line.startsWith(":")) return; // comment: the server's keep-alive ping
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "id") this.id = value;
    else if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
  }
}

// Resolves when the server ends the stream (after a `done` or `error` event, or when the
// connection's lifetime is up: the caller resumes then); rejects on a network failure, an
// abort, or an HTTP error (ApiError).
export async function readReplyStream(replyId, { lastEventId = null, onEvent, signal }) {
  const headers = authHeaders({ Accept: "text/event-stream" });
  if (lastEventId) headers["Last-Event-ID"] = lastEventId;
  const response = await fetch(`/messages/${replyId}/stream`, { headers, signal, cache: "no-store" });
  if (!response.ok) {
    throw new ApiError(response.status, await response.json().catch(() => null));
  }
  const parser = new EventStreamParser((event) => {
    let data = null;
    try {
      data = JSON.parse(event.data);
    } catch {
      data = { raw: event.data };
    }
    onEvent({ id: event.id, type: event.event, data });
  });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    parser.push(value);
  }
}
