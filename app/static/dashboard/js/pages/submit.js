// A job form built from the OpenAPI schema (FlowConfig, TrainConfig): its choices, defaults and
// bounds are the server's, and an error from the server marks the field it names.
import { get, post, schema } from "../api.js";
import { clear, errorBox, h } from "../ui.js";

// Shown first; every other scalar field of the schema goes under "More".
const MAIN = {
  flow: ["family", "blocks", "group", "width", "depth", "hidden_layers", "kernel_size", "coupling_split", "padding_channels"],
  training: ["steps", "batch_size", "learning_rate", "metric_interval", "checkpoint_interval", "logdet", "seed"],
};
const SKIP = new Set(["data_shape", "estimator"]);
// Group names are a pattern (trivial, C<N>, D<N>, SO2, O2), not an enum: offer the usual ones.
const GROUPS = ["trivial", "C2", "C4", "C8", "D2", "D4", "D8", "SO2", "O2"];

/** The non-null branch of `anyOf: [X, {type: null}]`, with the outer title and description. */
function concrete(property) {
  if (!property.anyOf) return { ...property, nullable: false };
  const branch = property.anyOf.find((b) => b.type !== "null") ?? {};
  return { ...branch, default: property.default, description: property.description, title: property.title, nullable: true };
}

/** One input for a schema property, with its path in the body as data-path. */
function field(section, name, property, value) {
  const p = concrete(property);
  const path = `${section}.${name}`;
  const attributes = { name: path, dataset: { path }, title: p.description ?? "" };
  let input;
  if (p.enum) {
    input = h("select", attributes, ...p.enum.map((option) => h("option", { value: option, selected: option === value }, option)));
  } else if (p.type === "boolean") {
    input = h("input", { ...attributes, type: "checkbox", checked: Boolean(value) });
  } else if (p.type === "integer" || p.type === "number") {
    const minimum = p.minimum ?? (p.exclusiveMinimum !== undefined ? p.exclusiveMinimum : undefined);
    input = h("input", {
      ...attributes, type: "number", value: value ?? "",
      min: minimum, max: p.maximum ?? p.exclusiveMaximum, step: p.type === "integer" ? 1 : "any",
      placeholder: p.nullable ? "none" : "",
    });
  } else if (p.type === "array") {
    input = h("input", { ...attributes, value: (value ?? []).join(", "), placeholder: (p.items?.enum ?? []).join(", ") });
  } else {
    input = h("input", { ...attributes, value: value ?? "", list: name === "group" ? "group-choices" : null });
  }
  input.dataset.kind = p.enum ? "enum" : p.type ?? "string";
  input.dataset.nullable = String(p.nullable);
  // The bounds are this server's limits; a seed's 2^63 is no news to anyone.
  const bound = p.maximum !== undefined && p.maximum < 1e9 ? ` (≤ ${p.maximum.toLocaleString("en")})` : "";
  return h("label", { class: p.type === "boolean" ? "check" : "", title: p.description ?? "" },
    p.type === "boolean" ? [input, name] : [`${name}${bound}`, input]);
}

function readField(input) {
  const kind = input.dataset.kind;
  if (kind === "boolean") return input.checked;
  const text = input.value.trim();
  if (text === "") return input.dataset.nullable === "true" ? null : undefined;
  if (kind === "integer" || kind === "number") return Number(text);
  if (kind === "array") return text.split(/[\s,]+/).filter(Boolean);
  return text;
}

export async function submitPage(root, _, query) {
  // From the request body's schema, whose bounds are this server's limits.
  const [jobSchema, datasets] = await Promise.all([schema("JobIn"), get("/v1/datasets?limit=200")]);
  const [flowSchema, trainSchema] = [jobSchema.properties.flow, jobSchema.properties.training];
  const template = query.from ? await get(`/v1/jobs/${query.from}`) : null;
  const initial = { flow: template?.flow ?? {}, training: template?.training ?? {} };
  const wanted = query.dataset ?? template?.dataset_id;
  if (!datasets.items.length) {
    clear(root, h("h1", {}, "New job"), h("p", {}, "Create or upload a ", h("a", { href: "#/datasets" }, "data set"), " first."));
    return;
  }
  const datasetSelect = h("select", { id: "job-dataset", name: "dataset_id", dataset: { path: "dataset_id" } },
    ...datasets.items.map((d) => h("option", { value: d.id, selected: d.id === wanted }, `${d.name} — ${d.kind} [${d.shape.join(", ")}] (${d.id})`)));
  const shape = h("code", { id: "job-shape" });
  const out = h("div", { id: "submit-result" });
  const preview = h("pre", { id: "job-body" });
  const sections = { flow: flowSchema, training: trainSchema };
  const inputs = [];
  const fieldsets = Object.entries(sections).map(([section, body]) => {
    const names = Object.keys(body.properties).filter((name) => !SKIP.has(name));
    const make = (name) => {
      const value = initial[section][name] ?? body.properties[name].default;
      const label = field(section, name, body.properties[name], value);
      inputs.push(label.querySelector("[data-path]"));
      return label;
    };
    const main = MAIN[section].filter((name) => names.includes(name)).map(make);
    const more = names.filter((name) => !MAIN[section].includes(name)).map(make);
    return h("fieldset", {}, h("legend", {}, section === "flow" ? "Flow" : "Training"), main,
      h("details", {}, h("summary", {}, `More ${section} settings`), more));
  });
  const chosenDataset = () => datasets.items.find((d) => d.id === datasetSelect.value);
  const body = () => {
    const result = { dataset_id: datasetSelect.value, flow: { data_shape: chosenDataset().shape }, training: {} };
    const family = inputs.find((i) => i.dataset.path === "flow.family").value;
    for (const input of inputs) {
      const [section, name] = input.dataset.path.split(".");
      const value = readField(input);
      // Defaults are left out: the body shows what this job changes (the server fills the rest).
      const fallback = sections[section].properties[name].default;
      if (value === undefined || JSON.stringify(value) === JSON.stringify(fallback ?? null)) continue;
      if (name === "blocks" && family !== "mixed") continue;
      result[section][name] = value;
    }
    if (initial.flow.estimator) result.flow.estimator = initial.flow.estimator;
    return result;
  };
  const update = () => {
    shape.textContent = `[${chosenDataset().shape.join(", ")}]`;
    const blocks = inputs.find((i) => i.dataset.path === "flow.blocks");
    blocks.closest("label").hidden = inputs.find((i) => i.dataset.path === "flow.family").value !== "mixed";
    preview.textContent = JSON.stringify(body(), null, 2);
  };
  const submit = h("button", { id: "submit-job", type: "submit" }, "Submit job");
  const form = h("form", { id: "job-form" },
    h("fieldset", {}, h("legend", {}, "Data"), h("label", {}, "data set", datasetSelect), h("p", { class: "small muted" }, "item shape (flow.data_shape) ", shape)),
    fieldsets, submit, out);
  form.addEventListener("input", update);
  form.addEventListener("change", update);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(out);
    form.querySelectorAll(".invalid").forEach((input) => input.classList.remove("invalid"));
    submit.disabled = true;
    try {
      const job = await post("/v1/jobs", body());
      location.hash = `#/jobs/${job.id}`;
    } catch (error) {
      out.append(errorBox(error));
      const target = form.querySelector(`[data-path="${error.field}"]`);
      if (target) {
        target.classList.add("invalid");
        target.closest("details")?.setAttribute("open", "");
        target.focus();
      }
    } finally {
      submit.disabled = false;
    }
  });
  clear(root, h("h1", {}, "New training job"),
    h("datalist", { id: "group-choices" }, GROUPS.map((g) => h("option", { value: g }))),
    h("div", { class: "row" },
      h("div", { class: "card", style: "flex: 2 1 560px" }, form),
      h("div", { class: "card" }, h("h2", {}, "Request body"), h("p", { class: "muted small" }, "What the form sends as POST /v1/jobs (see /docs)."), preview)));
  update();
}
