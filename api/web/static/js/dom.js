// Building DOM nodes from data: text always goes in as text (textContent), never as HTML.

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

export function showError(node, error) {
  node.textContent = error ? (error.message ?? String(error)) : "";
  node.hidden = !error;
}

export function fillSelect(select, options, selected) {
  select.replaceChildren(
    ...options.map((option) =>
      el("option", { value: option.value, disabled: option.disabled, title: option.title }, option.label),
    ),
  );
  if (selected !== undefined && options.some((option) => option.value === selected && !option.disabled)) {
    select.value = selected;
  }
}
