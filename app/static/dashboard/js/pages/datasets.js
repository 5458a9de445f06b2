// Data sets: the list, built-in sets, uploads, and one set's preview and jobs.
import { ApiError, get, imageUrl, post, request, schema, withQuery } from "../api.js";
import { badge, busy, clear, countText, errorBox, h, number, table, when } from "../ui.js";

function builtinCard(onCreated) {
  const out = h("div");
  const name = h("select", { id: "builtin-name" });
  const n = h("input", { id: "builtin-n", type: "number", min: 1, placeholder: "default" });
  const seed = h("input", { id: "builtin-seed", type: "number", min: 0, value: 0 });
  const help = h("p", { class: "muted small" });
  schema("BuiltinDatasetIn").then((body) => {
    // The names are published as an enum, their descriptions in the field's description.
    const described = new Map(
      (body.properties.name.description.split(": ").slice(1).join(": ") || "")
        .split("; ")
        .map((part) => [part.split(" (")[0], part.slice(part.indexOf("(") + 1, -1)]),
    );
    for (const option of body.properties.name.enum ?? []) {
      name.append(h("option", { value: option }, option));
    }
    const maximum = body.properties.n.anyOf?.find((b) => b.maximum)?.maximum;
    if (maximum) n.max = maximum;
    const describe = () => (help.textContent = described.get(name.value) ?? "");
    name.addEventListener("change", describe);
    describe();
  });
  const button = h("button", { id: "create-builtin" }, "Create");
  button.addEventListener("click", () =>
    busy(button, clear(out), async () => {
      const body = { name: name.value, seed: Number(seed.value || 0) };
      if (n.value) body.n = Number(n.value);
      const dataset = await post("/v1/datasets/builtin", body);
      out.append(h("div", { class: "notice" }, "Created ", h("a", { href: `#/datasets/${dataset.id}` }, dataset.name), "."));
      onCreated();
    }),
  );
  return h("div", { class: "card" }, h("h2", {}, "Built-in data set"),
    h("div", {}, h("label", {}, "name", name), h("label", {}, "items", n), h("label", {}, "seed", seed)),
    help, button, out);
}

function uploadCard(onCreated) {
  const out = h("div");
  const file = h("input", { id: "upload-file", type: "file", accept: ".npy,.npz,.csv,.zip" });
  const name = h("input", { id: "upload-name", placeholder: "default: the file name", maxlength: 200 });
  const button = h("button", { id: "upload" }, "Upload");
  button.addEventListener("click", () =>
    busy(button, clear(out), async () => {
      if (!file.files.length) throw new ApiError(0, "choose a file first", "file");
      const form = new FormData();
      form.append("file", file.files[0]);
      if (name.value.trim()) form.append("name", name.value.trim());
      const dataset = await request("POST", "/v1/datasets", { form });
      out.append(h("div", { class: "notice" }, "Uploaded ", h("a", { href: `#/datasets/${dataset.id}` }, dataset.name), "."));
      onCreated();
    }),
  );
  return h("div", { class: "card" }, h("h2", {}, "Upload"),
    h("p", { class: "muted small" }, "Points: .npy / .npz (N, D) or .csv. Images: a .zip of PNGs of one size."),
    h("div", {}, h("label", {}, "file", file), h("label", {}, "name", name)), button, out);
}

function datasetRow(dataset, refresh) {
  const remove = h("button", { class: "secondary" }, "Delete");
  const cell = h("td");
  remove.addEventListener("click", () =>
    busy(remove, cell, async () => {
      if (!confirm(`Delete data set ${dataset.name}?`)) return;
      await request("DELETE", `/v1/datasets/${dataset.id}`);
      refresh();
    }),
  );
  return h("tr", { dataset: { id: dataset.id } },
    h("td", {}, h("a", { href: `#/datasets/${dataset.id}` }, dataset.name)),
    h("td", {}, dataset.kind),
    h("td", {}, `[${dataset.shape.join(", ")}]`),
    h("td", { class: "num" }, number(dataset.count)),
    h("td", { class: "muted" }, dataset.source),
    h("td", { class: "muted" }, when(dataset.created_at)),
    h("td", {}, h("a", { class: "button", href: `#/new-job?dataset=${dataset.id}` }, "Train"), " ", remove),
    cell,
  );
}

export async function datasetsPage(root) {
  const list = h("div", { class: "card", id: "dataset-list" });
  const refresh = async () => {
    const datasets = await get("/v1/datasets?limit=200");
    clear(list, h("h2", {}, `Data sets (${countText(datasets)})`),
      datasets.items.length
        ? table(["name", "kind", "item shape", { label: "items", num: true }, "source", "created", "", ""],
            datasets.items.map((d) => datasetRow(d, refresh)))
        : h("p", { class: "muted" }, "None yet: create a built-in one or upload a file."));
  };
  clear(root, h("h1", {}, "Data sets"), h("div", { class: "row" }, builtinCard(refresh), uploadCard(refresh)), list);
  await refresh();
}

export async function datasetPage(root, [id]) {
  const dataset = await get(`/v1/datasets/${id}`);
  const jobs = await get(withQuery("/v1/jobs", { dataset_id: id, limit: 50 }));
  const preview = h("img", { class: "preview", id: "dataset-preview", alt: `preview of ${dataset.name}` });
  const previewCard = h("div", { class: "card" }, h("h2", {}, "Preview"), preview);
  imageUrl(`/v1/datasets/${id}/preview.png`).then((url) => (preview.src = url), (error) => previewCard.append(errorBox(error)));
  clear(root,
    h("h1", {}, `Data set ${dataset.name}`),
    h("div", { class: "row" },
      previewCard,
      h("div", { class: "card" }, h("h2", {}, "About"),
        h("dl", { class: "kv" },
          ...[["id", dataset.id], ["kind", dataset.kind], ["item shape", `[${dataset.shape.join(", ")}]`],
            ["items", number(dataset.count)], ["dtype", dataset.dtype], ["source", dataset.source],
            ["parameters", JSON.stringify(dataset.source_params)], ["size", `${number(dataset.size_bytes)} bytes`],
            ["checksum", dataset.checksum.slice(0, 16) + "…"], ["created", when(dataset.created_at)]]
            .flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
        h("p", {}, h("a", { class: "button", id: "train-on-dataset", href: `#/new-job?dataset=${id}` }, "Train a model on it")))),
    h("div", { class: "card" }, h("h2", {}, "Jobs on this data set"),
      jobs.items.length
        ? table(["job", "state", "family", "group", "step"], jobs.items.map((job) =>
            h("tr", {}, h("td", {}, h("a", { href: `#/jobs/${job.id}` }, job.id)), h("td", {}, badge(job.state)),
              h("td", {}, job.flow.family), h("td", {}, job.flow.group), h("td", {}, `${job.step} / ${job.total_steps}`))))
        : h("p", { class: "muted" }, "None yet.")),
  );
}
