// Model output as markdown, safely: HTML in the text is shown as text, never parsed as HTML.
//
// marked turns markdown into HTML; its `html` tokens (raw HTML in the source) are escaped here,
// so `<img src=x onerror=...>` arrives as the literal text. DOMPurify then sanitizes what
// marked produced (links such as `javascript:` and anything marked may let through), and the
// Content-Security-Policy forbids inline scripts as a last line.
//
// The two libraries are 80 KB, more than half the page: they load after the page is
// interactive (`loadMarkdown()`), and until then text renders as plain text.

let marked = null;
let loading = null;

const escapeHtml = (text) =>
  text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

const PURIFY = {
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#)/i,
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe"],
  FORBID_ATTR: ["style"],
  RETURN_DOM_FRAGMENT: true,
};

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = src;
    script.onload = resolve;
    script.onerror = () => reject(new Error(`could not load ${src}`));
    document.head.append(script);
  });
}

export function loadMarkdown() {
  loading ??= Promise.all([import("../vendor/marked.esm.js"), loadScript("/static/vendor/purify.min.js")]).then(
    ([module]) => {
      marked = new module.Marked({
        gfm: true,
        breaks: true,
        renderer: {
          html(token) {
            return escapeHtml(token.text ?? token.raw ?? "");
          },
        },
      });
    },
  );
  return loading;
}

export function markdownLoaded() {
  return marked !== null;
}

// A DocumentFragment: markdown once the libraries are here, else the plain text.
export function renderMarkdown(text) {
  if (!marked) {
    const plain = document.createDocumentFragment();
    plain.append(Object.assign(document.createElement("p"), { className: "plain", textContent: text ?? "" }));
    return plain;
  }
  const clean = window.DOMPurify.sanitize(marked.parse(text ?? ""), PURIFY);
  for (const link of clean.querySelectorAll("a[href]")) {
    link.target = "_blank";
    link.rel = "noopener noreferrer";
  }
  return clean;
}
