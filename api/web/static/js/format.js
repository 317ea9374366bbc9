// How figures read on the page.

export function formatMs(ms) {
  if (ms === null || ms === undefined) return null;
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
}

export function formatCost(cost) {
  if (cost === null || cost === undefined) return "unpriced";
  const value = Number(cost);
  if (value === 0) return "$0";
  return value < 0.01 ? `$${value.toPrecision(2)}` : `$${value.toFixed(4)}`;
}

export function formatTokens(usage) {
  if (!usage) return null;
  const approx = usage.estimated ? "~" : "";
  return `${approx}${usage.prompt_tokens} in · ${usage.completion_tokens} out`;
}

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
