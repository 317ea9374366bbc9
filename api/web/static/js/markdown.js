// Model output as markdown, safely: HTML in the text is shown as text, never parsed as HTML.
//
// marked turns markdown into HTML; its `html` tokens (raw HTML in the source) are escaped here,
// so `<img src=x onerror=...>` arrives as the literal text. DOMPurify then sanitizes what
// marked produced (links such as `javascript:` and anything marked may let through), and the
// Content-Security-Policy forbids inline scripts as a last line.

import { Marked } from "../vendor/marked.esm.js";

const escapeHtml = (text) =>
  text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

const marked = new Marked({
  gfm: true,
  breaks: true,
  renderer: {
    html(token) {
      return escapeHtml(token.text ?? token.raw ?? "");
    },
  },
});

const PURIFY = {
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#)/i,
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe"],
  FORBID_ATTR: ["style"],
};

export function renderMarkdown(text) {
  const html = marked.parse(text ?? "");
  const clean = window.DOMPurify.sanitize(html, { ...PURIFY, RETURN_DOM_FRAGMENT: true });
  for (const link of clean.querySelectorAll("a[href]")) {
    link.target = "_blank";
    link.rel = "noopener noreferrer";
  }
  return clean;
}
