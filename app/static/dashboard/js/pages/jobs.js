// Jobs: the list with live progress, one job's curves while it trains, and runs compared.
import { get, hasOperation, post, request, withQuery } from "../api.js";
import { lineChart } from "../plots.js";
import { badge, busy, clear, countText, duration, h, headline, number, progress, table, when } from "../ui.js";

const ACTIVE = new Set(["queued", "running"]);
const POLL_MS = 1500;

function jobRow(job, selected) {
  const box = h("input", { type: "checkbox", class: "compare-box", value: job.id, checked: selected.has(job.id) });
  box.addEventListener("change", () => (box.checked ? selected.add(job.id) : selected.delete(job.id)));
  const metric = headline(job.latest_metrics);
  return h("tr", { dataset: { id: job.id, state: job.state } },
    h("td", {}, box),
    h("td", {}, h("a", { href: `#/jobs/${job.id}` }, job.id)),
    h("td", {}, badge(job.state)),
    h("td", {}, `${job.flow.family} · ${job.flow.group} · [${job.flow.data_shape.join(", ")}]`),
    h("td", {}, progress(job.progress), " ", h("span", { class: "small muted" }, `${job.step}/${job.total_steps}`)),
    h("td", { class: "num" }, job.state === "running" ? duration(job.eta_seconds) : "–"),
    h("td", { class: "num" }, metric ? `${metric[0]} ${number(metric[1])}` : "–"),
    h("td", { class: "muted" }, when(job.created_at)),
  );
}

export async function jobsPage(root, _, query, page) {
  const selected = new Set();
  const list = h("div", { id: "job-list" });
  const compare = h("button", { id: "compare-selected" }, "Compare selected");
  compare.addEventListener("click", () => {
    if (selected.size) location.hash = `#/compare?ids=${[...selected].join(",")}`;
  });
  const state = h("select", { id: "job-state-filter" }, h("option", { value: "" }, "all states"),
    ...["queued", "running", "succeeded", "failed", "cancelled"].map((s) => h("option", { value: s, selected: s === query.state }, s)));
  state.addEventListener("change", () => (location.hash = state.value ? `#/jobs?state=${state.value}` : "#/jobs"));
  const refresh = async () => {
    const jobs = await get(withQuery("/v1/jobs", { limit: 200, state: query.state }));
    clear(list, h("p", { class: "muted" }, `${countText(jobs)} jobs`),
      jobs.items.length
        ? table(["", "job", "state", "flow", "progress", { label: "ETA", num: true }, { label: "latest", num: true }, "created"],
            jobs.items.map((job) => jobRow(job, selected)))
        : h("p", { class: "muted" }, "No jobs yet: ", h("a", { href: "#/new-job" }, "submit one"), "."));
    return jobs.items.some((job) => ACTIVE.has(job.state));
  };
  clear(root, h("h1", {}, "Jobs"),
    h("div", { class: "card" }, h("div", {}, h("label", {}, "state", state), " ", compare, " ",
      h("a", { class: "button", href: "#/new-job" }, "New job")), list));
  await refresh();
  page.every(POLL_MS, async () => {
    await refresh();
    return true; // new jobs may appear from elsewhere
  });
}

/** The metric keys worth a curve, the validation ones first. */
function curveKeys(points) {
  const keys = new Set(points.flatMap((point) => Object.keys(point.values)));
  const main = [...keys].filter((key) => /^(val_)?(nll|bpd)/.test(key));
  return { main: main.length ? main.sort().reverse() : ["loss"], all: [...keys].sort() };
}

const seriesOf = (points, key, label = key) => ({
  label,
  points: points.filter((p) => p.values[key] !== null && p.values[key] !== undefined).map((p) => [p.step, p.values[key]]),
});

/** Metric points of a job after `afterStep`, every page. */
async function metricsAfter(id, afterStep) {
  const items = [];
  for (;;) {
    const page = await get(withQuery(`/v1/jobs/${id}/metrics`, { after_step: afterStep, limit: 10000 }));
    items.push(...page.items);
    if (page.items.length < 10000) return items;
    afterStep = page.items.at(-1).step;
  }
}

export async function jobPage(root, [id], _, page) {
  let job = await get(`/v1/jobs/${id}`);
  const points = await metricsAfter(id);
  const header = h("div", { class: "card", id: "job-status" });
  const chartBox = h("div", { class: "chart", id: "loss-chart" });
  const metricSelect = h("select", { id: "curve-metric" });
  const out = h("div");
  let chosen = null;
  const canDelete = await hasOperation("DELETE", "/v1/jobs/{job_id}");

  const keys = () => curveKeys(points);
  const chosenKeys = () => (chosen ? [chosen] : keys().main);
  const fillSelect = () => {
    const { all } = keys();
    if (metricSelect.options.length === all.length + 1) return;
    clear(metricSelect, h("option", { value: "" }, "likelihood (train and validation)"),
      ...all.map((key) => h("option", { value: key, selected: key === chosen }, key)));
  };
  let chart = null;
  metricSelect.addEventListener("change", () => {
    chosen = metricSelect.value || null;
    chart.update(chosenKeys().map((k) => seriesOf(points, k)));
  });

  const renderHeader = () => {
    const cancel = h("button", { class: "danger", id: "cancel-job" }, job.cancel_requested ? "Cancelling…" : "Cancel");
    cancel.disabled = job.cancel_requested;
    cancel.addEventListener("click", () =>
      busy(cancel, out, async () => {
        job = await post(`/v1/jobs/${id}/cancel`);
        renderHeader();
      }),
    );
    const remove = h("button", { class: "secondary", id: "delete-job" }, "Delete");
    remove.addEventListener("click", () =>
      busy(remove, out, async () => {
        if (!confirm("Delete this job with its checkpoints and metrics?")) return;
        await request("DELETE", `/v1/jobs/${id}`);
        location.hash = "#/jobs";
      }),
    );
    const metric = headline(job.latest_metrics);
    clear(header,
      h("div", { class: "row" },
        h("div", {},
          h("div", {}, badge(job.state), " ", progress(job.progress), " ",
            h("span", { id: "job-step" }, `step ${number(job.step)} of ${number(job.total_steps)} (${job.progress}%)`)),
          h("p", { class: "muted" },
            job.state === "running" ? `ETA ${duration(job.eta_seconds)} · ` : "",
            `attempt ${job.attempts}`, job.worker ? ` · ${job.worker}` : "",
            metric ? ` · ${metric[0]} ${number(metric[1])}` : ""),
        ),
        h("span", { class: "spacer" }),
        h("div", {},
          ACTIVE.has(job.state) ? cancel : null,
          !ACTIVE.has(job.state) && canDelete ? remove : null, " ",
          job.step > 0 || job.state === "succeeded" ? h("a", { class: "button", id: "open-model", href: `#/models/${id}` }, "Open the model") : null, " ",
          h("a", { class: "button secondary", id: "train-again", href: `#/new-job?from=${id}` }, "Train again…"))),
      job.error ? h("div", { class: "error", id: "job-error" }, job.error) : null,
      out,
    );
  };
  renderHeader();
  fillSelect();
  clear(root,
    h("h1", {}, `Job ${id}`),
    header,
    h("div", { class: "card" }, h("div", {}, h("label", {}, "curve", metricSelect)), chartBox),
    h("div", { class: "row" },
      h("div", { class: "card" }, h("h2", {}, "Flow"), h("pre", { id: "job-flow" }, JSON.stringify(job.flow, null, 2))),
      h("div", { class: "card" }, h("h2", {}, "Training"), h("pre", {}, JSON.stringify(job.training, null, 2)),
        h("dl", { class: "kv small" }, h("dt", {}, "data set"), h("dd", {}, job.dataset_id ? h("a", { href: `#/datasets/${job.dataset_id}` }, job.dataset_id) : "deleted"),
          h("dt", {}, "created"), h("dd", {}, when(job.created_at)), h("dt", {}, "started"), h("dd", {}, when(job.started_at)),
          h("dt", {}, "finished"), h("dd", {}, when(job.finished_at))))),
  );
  // Made once the box is on the page, so that it takes the box's width.
  chart = lineChart(chartBox, { title: "Training curves", series: chosenKeys().map((k) => seriesOf(points, k)) });
  chartBox.dataset.points = String(points.length);
  if (!ACTIVE.has(job.state)) return;
  page.every(POLL_MS, async () => {
    job = await get(`/v1/jobs/${id}`);
    const fresh = await metricsAfter(id, points.length ? points.at(-1).step : undefined);
    if (fresh.length) {
      points.push(...fresh);
      fillSelect();
      chart.update(chosenKeys().map((k) => seriesOf(points, k)));
      chartBox.dataset.points = String(points.length);
    }
    renderHeader();
    return ACTIVE.has(job.state);
  });
}

const PARAMETERS = [
  ["family", (j) => j.flow.family], ["group", (j) => j.flow.group], ["width", (j) => j.flow.width],
  ["depth", (j) => j.flow.depth], ["hidden layers", (j) => j.flow.hidden_layers],
  ["steps", (j) => j.training.steps], ["batch", (j) => j.training.batch_size],
  ["learning rate", (j) => j.training.learning_rate], ["seed", (j) => j.training.seed],
];

export async function comparePage(root, _, query, page) {
  const ids = (query.ids || "").split(",").filter(Boolean);
  if (!ids.length) {
    clear(root, h("h1", {}, "Compare jobs"), h("p", {}, "Select jobs on the ", h("a", { href: "#/jobs" }, "jobs page"), " first."));
    return;
  }
  const jobs = await Promise.all(ids.map((id) => get(`/v1/jobs/${id}`)));
  const histories = await Promise.all(ids.map((id) => metricsAfter(id)));
  const keys = [...new Set(histories.flatMap((points) => points.flatMap((p) => Object.keys(p.values))))].sort();
  let key = keys.find((k) => /^val_(nll|bpd)/.test(k)) ?? keys.find((k) => /^(nll|bpd)/.test(k)) ?? keys[0];
  const select = h("select", { id: "compare-metric" }, ...keys.map((k) => h("option", { value: k, selected: k === key }, k)));
  const chartBox = h("div", { class: "chart", id: "compare-chart" });
  const series = () => jobs.map((job, i) => seriesOf(histories[i], key, `${job.id} (${job.flow.family} ${job.flow.group})`));
  const differing = PARAMETERS.filter(([, f]) => new Set(jobs.map((j) => JSON.stringify(f(j)))).size > 1);
  clear(root, h("h1", {}, `Compare ${jobs.length} jobs`),
    h("div", { class: "card" }, h("label", {}, "metric", select), chartBox),
    h("div", { class: "card" }, h("h2", {}, "Parameters"),
      h("p", { class: "muted small" }, differing.length ? `They differ in: ${differing.map(([n]) => n).join(", ")}.` : "Same parameters."),
      table(["job", "state", ...PARAMETERS.map(([name]) => name), { label: `last ${key ?? ""}`, num: true }],
        jobs.map((job, i) => {
          const last = histories[i].filter((p) => p.values[key] != null).at(-1);
          return h("tr", {}, h("td", {}, h("a", { href: `#/jobs/${job.id}` }, job.id)), h("td", {}, badge(job.state)),
            ...PARAMETERS.map(([, f]) => h("td", {}, String(f(job)))), h("td", { class: "num" }, last ? number(last.values[key]) : "–"));
        }))),
  );
  const chart = lineChart(chartBox, { title: key, series: series() });
  select.addEventListener("change", () => {
    key = select.value;
    chart.update(series());
  });
  if (!jobs.some((job) => ACTIVE.has(job.state))) return;
  page.every(POLL_MS * 2, async () => {
    for (let i = 0; i < jobs.length; i++) {
      if (!ACTIVE.has(jobs[i].state)) continue;
      jobs[i] = await get(`/v1/jobs/${ids[i]}`);
      histories[i].push(...(await metricsAfter(ids[i], histories[i].at(-1)?.step)));
    }
    chart.update(series());
    return jobs.some((job) => ACTIVE.has(job.state));
  });
}
