// Small DOM helpers: element creation, formatting, state badges, progress bars, errors.

/** h("div", {class: "card"}, "text", child, ...): an element; null/false children are skipped. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name in element && name !== "list" && typeof value !== "string") element[name] = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export function clear(element, ...children) {
  element.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== false));
  return element;
}

export function number(value, digits = 4) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (Number.isInteger(value)) return value.toLocaleString("en");
  const magnitude = Math.abs(value);
  if (magnitude !== 0 && (magnitude < 1e-3 || magnitude >= 1e6)) return value.toExponential(2);
  return value.toPrecision(digits);
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

export const badge = (state) => h("span", { class: `badge ${state}`, dataset: { state } }, state);

export function progress(percent) {
  const bar = h("span");
  bar.style.width = `${Math.max(0, Math.min(100, percent))}%`;
  return h("span", { class: "progress", title: `${percent}%` }, bar);
}

export function errorBox(error) {
  const field = error.field ? ` (field: ${error.field})` : "";
  return h("div", { class: "error", role: "alert" }, `${error.message}${field}`);
}

/** Runs `action` with the button disabled; shows an error in `out` if it throws. */
export async function busy(button, out, action) {
  button.disabled = true;
  try {
    return await action();
  } catch (error) {
    if (out) out.append(errorBox(error));
    else throw error;
  } finally {
    button.disabled = false;
  }
}

export function table(headers, rows, attributes = {}) {
  return h(
    "table",
    attributes,
    h("thead", {}, h("tr", {}, headers.map((name) => h("th", { class: name.num ? "num" : "" }, name.label ?? name)))),
    h("tbody", {}, rows),
  );
}

/** "3 of 12" when the list carries a total (newer servers), else "3". */
export function countText(list) {
  return list.total === undefined ? `${list.items.length}` : `${list.items.length} of ${list.total}`;
}

/** The headline metric of a metric dict: validation first, then the training one. */
export function headline(metrics) {
  if (!metrics) return null;
  for (const key of ["val_bpd", "val_nll", "val_bpd_bound", "val_nll_bound", "bpd", "nll", "loss"]) {
    if (metrics[key] !== undefined && metrics[key] !== null) return [key, metrics[key]];
  }
  return null;
}
