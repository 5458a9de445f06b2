// Models (a model's id is its job's id): the list, and one model's samples, density, scores and
// invariance check.
import { ApiError, get, hasOperation, post, request, schema } from "../api.js";
import { imageTransforms, pointTransforms } from "../groups.js";
import { gridPoints, imageGrid, scatter, squareAround } from "../plots.js";
import { badge, busy, clear, countText, h, headline, number, table, when } from "../ui.js";

const DENSITY_GRID = 40; // cells per side of the 2-D density heatmap

export async function modelsPage(root) {
  let rows;
  let count;
  if (await hasOperation("GET", "/v1/models")) {
    const models = await get("/v1/models?limit=200");
    count = countText(models);
    rows = models.items.map((m) => ({ id: m.id, state: m.job_state, flow: m.flow, step: m.step, metrics: m.metrics, created: m.created_at }));
  } else {
    // Older servers list no models: every job with a checkpoint is one.
    const jobs = await get("/v1/jobs?limit=200");
    rows = jobs.items.filter((j) => j.state === "succeeded" || j.step > 0)
      .map((j) => ({ id: j.id, state: j.state, flow: j.flow, step: j.step, metrics: j.latest_metrics, created: j.finished_at ?? j.created_at }));
    count = `${rows.length}`;
  }
  clear(root, h("h1", {}, "Models"),
    h("div", { class: "card", id: "model-list" }, h("p", { class: "muted" }, `${count} models; a model's id is the id of the job that trained it.`),
      rows.length
        ? table(["model", "job state", "flow", "data", "step", { label: "final", num: true }, "updated"], rows.map((m) => {
            const metric = headline(m.metrics);
            return h("tr", { dataset: { id: m.id } }, h("td", {}, h("a", { href: `#/models/${m.id}` }, m.id)), h("td", {}, badge(m.state)),
              h("td", {}, `${m.flow.family} · ${m.flow.group}`), h("td", {}, `[${m.flow.data_shape.join(", ")}]`),
              h("td", {}, number(m.step)), h("td", { class: "num" }, metric ? `${metric[0]} ${number(metric[1])}` : "–"),
              h("td", { class: "muted" }, when(m.created)));
          }))
        : h("p", { class: "muted" }, "No trained models yet.")));
}

/** log p of many inputs, in requests of at most the server's batch limit (ScoreIn.inputs). */
async function logProbs(id, inputs, method = "auto") {
  const body = await schema("ScoreIn");
  const batch = body.properties.inputs.maxItems ?? 256;
  const results = { log_prob: [], bits_per_dim: [], stderr: [], method: null, lower_bound: false };
  for (let start = 0; start < inputs.length; start += batch) {
    const answer = await post(`/v1/models/${id}/log-prob`, { inputs: inputs.slice(start, start + batch), method });
    results.log_prob.push(...answer.log_prob);
    results.bits_per_dim.push(...(answer.bits_per_dim ?? []));
    results.stderr.push(...(answer.stderr ?? []));
    results.method = answer.method;
    results.lower_bound = answer.lower_bound;
  }
  return results;
}

/** A decoded PNG file as a (C, H, W) array of 8-bit levels with the model's channel count. */
async function pngToArray(file, channels) {
  const bitmap = await createImageBitmap(file);
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0);
  const { data, width, height } = context.getImageData(0, 0, bitmap.width, bitmap.height);
  return Array.from({ length: channels }, (_, c) =>
    Array.from({ length: height }, (_, y) => Array.from({ length: width }, (_, x) => data[(y * width + x) * 4 + Math.min(c, 2)])));
}

function parsePoints(text, dim) {
  const rows = text.split("\n").map((line) => line.trim()).filter((line) => line && !line.startsWith("#"));
  return rows.map((line, i) => {
    const values = line.split(/[\s,;]+/).filter(Boolean).map(Number);
    if (values.length !== dim || values.some((v) => !Number.isFinite(v))) {
      throw new ApiError(0, `line ${i + 1} ("${line}") is not ${dim} numbers`, "inputs");
    }
    return values;
  });
}

export async function modelPage(root, [id]) {
  const model = await get(`/v1/models/${id}`);
  const points = model.kind === "points";
  const twoD = points && model.data_shape[0] === 2;
  const sampleSchema = await schema("SampleIn");
  const maxSamples = sampleSchema.properties.n.maximum ?? 1024;
  const state = { samples: null };

  // Samples (and the density for 2-D models).
  const n = h("input", { id: "sample-n", type: "number", min: 1, max: maxSamples, value: points ? 512 : 36 });
  const seed = h("input", { id: "sample-seed", type: "number", min: 0, value: 0 });
  const temperature = h("input", { id: "sample-temperature", type: "number", min: 0.05, max: 10, step: 0.05, value: 1 });
  const withDensity = h("input", { id: "sample-density", type: "checkbox", checked: twoD });
  const canvas = h("canvas", { class: "plot", id: "samples-canvas" });
  const sampleOut = h("div", { id: "samples-status", class: "muted small" });
  const draw = h("button", { id: "draw-samples" }, "Draw samples");
  draw.addEventListener("click", () =>
    busy(draw, sampleOut, async () => {
      clear(sampleOut, "sampling…");
      const answer = await post(`/v1/models/${id}/samples`, { n: Number(n.value), seed: Number(seed.value), temperature: Number(temperature.value) });
      state.samples = answer.samples;
      if (!points) {
        imageGrid(canvas, answer.samples, { scale: Math.max(2, Math.round(48 / model.data_shape[1])) });
        clear(sampleOut, `${answer.n} samples at temperature ${answer.temperature}, seed ${answer.seed} (step ${answer.step}).`);
        canvas.dataset.drawn = "samples";
        return;
      }
      let density = null;
      const r = squareAround(answer.samples);
      if (twoD && withDensity.checked) {
        clear(sampleOut, "scoring the density grid…");
        const grid = gridPoints(r, DENSITY_GRID);
        density = { size: DENSITY_GRID, logProb: (await logProbs(id, grid)).log_prob };
      }
      scatter(canvas, answer.samples, { r, density });
      canvas.dataset.drawn = density ? "density" : "samples";
      clear(sampleOut, `${answer.n} samples at temperature ${answer.temperature}, seed ${answer.seed} (step ${answer.step})`,
        density ? `; density log p on a ${DENSITY_GRID}×${DENSITY_GRID} grid over [−${number(r, 3)}, ${number(r, 3)}]², colours spanning 10 nats below its maximum ${number(Math.max(...density.logProb), 4)}.` : ".");
    }),
  );

  // Scoring: points typed in, or PNG files.
  const textInput = h("textarea", { id: "score-points", placeholder: points ? "x, y  (one point per line)" : "" });
  if (twoD) textInput.value = "3, 1.5\n4, 0\n0, 0";
  const files = h("input", { id: "score-files", type: "file", accept: "image/png", multiple: true });
  const method = h("select", { id: "score-method" }, ...["auto", "exact", "estimate"].map((m) => h("option", { value: m }, m)));
  const scoreOut = h("div", { id: "score-result" });
  const scoreButton = h("button", { id: "score" }, "Score");
  const inputs = async () => {
    if (points) return parsePoints(textInput.value, model.data_shape[0]);
    if (!files.files.length) throw new ApiError(0, "choose one or more PNG files of the model's size", "files");
    return Promise.all([...files.files].map((file) => pngToArray(file, model.data_shape[0])));
  };
  scoreButton.addEventListener("click", () =>
    busy(scoreButton, clear(scoreOut), async () => {
      let answer;
      let names;
      if (points) {
        const batch = await inputs();
        answer = await post(`/v1/models/${id}/log-prob`, { inputs: batch, method: method.value });
        names = batch.map((p) => `(${p.map((v) => number(v, 3)).join(", ")})`);
      } else {
        const form = new FormData();
        for (const file of files.files) form.append("files", file);
        form.append("method", method.value);
        answer = await request("POST", `/v1/models/${id}/log-prob`, { form });
        names = [...files.files].map((file) => file.name);
      }
      const bound = answer.lower_bound ? " (lower bound)" : "";
      clear(scoreOut,
        h("p", { class: "muted small" }, `method ${answer.method}${bound}, checkpoint step ${answer.step}`),
        table(["input", { label: `log p${bound}`, num: true }, { label: "bits/dim", num: true }, { label: "± stderr", num: true }],
          answer.log_prob.map((value, i) => h("tr", {}, h("td", {}, names[i]), h("td", { class: "num" }, number(value, 6)),
            h("td", { class: "num" }, answer.bits_per_dim ? number(answer.bits_per_dim[i], 5) : "–"),
            h("td", { class: "num" }, answer.stderr ? number(answer.stderr[i], 3) : "–"))),
          { id: "score-table" }));
    }),
  );

  // Invariance: one input and its transformed copies, scored side by side.
  const invarianceOut = h("div", { id: "invariance-result" });
  const invarianceButton = h("button", { id: "check-invariance" }, "Check invariance");
  invarianceButton.addEventListener("click", () =>
    busy(invarianceButton, clear(invarianceOut), async () => {
      let input;
      let source;
      try {
        [input] = await inputs();
        source = "the first input above";
      } catch (error) {
        if (!state.samples) throw error;
        [input] = state.samples;
        source = "the first sample";
      }
      if (points && !twoD) throw new ApiError(0, "the group acts on 2-D points only; this model's points are not 2-D", "inputs");
      const transforms = points ? pointTransforms(model.flow.group)
        : imageTransforms(model.flow.group, model.data_shape[1] === model.data_shape[2]);
      // Integer levels would be dequantized with fresh noise per copy; the centre of each level
      // ((k + 0.5) / 256, an intensity) makes the copies differ by the transformation alone.
      const centred = points ? input : input.map((c) => c.map((row) => row.map((k) => (k + 0.5) / 256)));
      const answer = await logProbs(id, transforms.map((t) => t.apply(centred)));
      const reference = answer.log_prob[0];
      const inGroup = transforms.map((t, i) => [t, answer.log_prob[i]]).filter(([t]) => t.inGroup);
      const spread = Math.max(...inGroup.map(([, v]) => Math.abs(v - reference)));
      clear(invarianceOut,
        h("p", {}, `Group ${model.flow.group}, input: ${source}. Largest |Δ log p| over the group's elements: `,
          h("strong", { id: "invariance-spread" }, number(spread, 3)),
          answer.method === "estimate" ? " (log-dets estimated: differences include the estimator's noise)" : " (float32 rounding for an exactly invariant model)",
          points ? "." : "; pixels at the centre of their 8-bit level."),
        table(["transformation", "in the group", { label: "log p", num: true }, { label: "Δ vs identity", num: true }],
          transforms.map((t, i) => h("tr", {}, h("td", {}, t.name), h("td", {}, t.inGroup ? "yes" : h("span", { class: "muted" }, "no (control)")),
            h("td", { class: "num" }, number(answer.log_prob[i], 6)),
            h("td", { class: `num ${t.inGroup ? "" : "muted"}` }, number(answer.log_prob[i] - reference, 3)))),
          { id: "invariance-table" }));
    }),
  );

  const metric = headline(model.metrics);
  clear(root,
    h("h1", {}, `Model ${id}`),
    h("div", { class: "card" },
      h("dl", { class: "kv" },
        h("dt", {}, "job"), h("dd", {}, h("a", { href: `#/jobs/${id}` }, id), " ", badge(model.job_state)),
        h("dt", {}, "checkpoint"), h("dd", {}, `step ${number(model.step)}${model.final ? " (final)" : " (newest; still training)"}`),
        h("dt", {}, "data"), h("dd", {}, `${model.kind} [${model.data_shape.join(", ")}]`),
        h("dt", {}, "flow"), h("dd", {}, `${model.flow.family} · group ${model.flow.group} · width ${model.flow.width} · depth ${model.flow.depth}`),
        h("dt", {}, "metric"), h("dd", {}, metric ? `${metric[0]} ${number(metric[1])}` : "–"),
        h("dt", {}, "weights"), h("dd", {}, `${number(model.size_bytes)} bytes, sha256 ${model.sha256.slice(0, 12)}…`))),
    h("div", { class: "row" },
      h("div", { class: "card" }, h("h2", {}, twoD ? "Samples and density" : "Samples"),
        h("div", {}, h("label", {}, "samples", n), h("label", {}, "seed", seed), h("label", {}, "temperature", temperature),
          twoD ? h("label", { class: "check" }, withDensity, "density heatmap") : null),
        draw, h("div", {}, canvas), sampleOut),
      h("div", { class: "card" }, h("h2", {}, "Score"),
        points ? h("label", { style: "display:flex" }, `points (${model.data_shape[0]} numbers per line)`, textInput)
          : h("label", {}, `PNG files, ${model.data_shape[2]}×${model.data_shape[1]} pixels, ${model.data_shape[0]} channel(s)`, files),
        h("div", {}, h("label", {}, "log-det", method)), scoreButton, scoreOut,
        h("h2", { style: "margin-top:18px" }, "Invariance check"),
        h("p", { class: "muted small" }, "Scores the first input (or the first sample) and its transformed copies: an equivariant flow gives every element of its group the same log p; the controls outside the group need not."),
        invarianceButton, invarianceOut)),
  );
}
