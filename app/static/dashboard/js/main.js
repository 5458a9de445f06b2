// The dashboard: sign-in, then one page per hash route (#/datasets, #/jobs/<id>, ...).
import { apiKey, get, onUnauthorized } from "./api.js";
import { clear, errorBox, h } from "./ui.js";
import { datasetPage, datasetsPage } from "./pages/datasets.js";
import { comparePage, jobPage, jobsPage } from "./pages/jobs.js";
import { modelPage, modelsPage } from "./pages/models.js";
import { submitPage } from "./pages/submit.js";

const root = document.getElementById("page");

// [pattern, page]: a page is async (root, params, query, page) and may register cleanups
// (timers) on `page`, run when the route changes.
const ROUTES = [
  [/^\/datasets$/, datasetsPage, "datasets"],
  [/^\/datasets\/([^/]+)$/, datasetPage, "datasets"],
  [/^\/jobs$/, jobsPage, "jobs"],
  [/^\/jobs\/([^/]+)$/, jobPage, "jobs"],
  [/^\/compare$/, comparePage, "jobs"],
  [/^\/models$/, modelsPage, "models"],
  [/^\/models\/([^/]+)$/, modelPage, "models"],
  [/^\/new-job$/, submitPage, "new-job"],
];

/** The page being shown: its timers stop when another is shown. */
class PageContext {
  constructor() {
    this.cleanups = [];
    this.active = true;
  }
  /** Calls `tick` every `ms` until the page goes away or `tick` answers false. */
  every(ms, tick) {
    let timer = null;
    const run = async () => {
      if (!this.active) return;
      let again = true;
      try {
        again = (await tick()) !== false;
      } catch (error) {
        console.warn("refresh failed", error);
      }
      if (again && this.active) timer = setTimeout(run, ms);
    };
    timer = setTimeout(run, ms);
    this.cleanups.push(() => clearTimeout(timer));
  }
  close() {
    this.active = false;
    this.cleanups.forEach((cleanup) => cleanup());
  }
}

let current = null;

function signInPage(message) {
  document.getElementById("nav").hidden = true;
  document.getElementById("sign-out").hidden = true;
  document.getElementById("whoami").textContent = "";
  const input = h("input", { id: "api-key", type: "password", placeholder: "efnf_...", autocomplete: "off", required: true });
  const out = h("div");
  const form = h(
    "form",
    { class: "card signin", id: "sign-in-form" },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "Paste an API key. It stays in this tab's session storage and is sent as ",
      h("code", {}, "Authorization: Bearer"), " with every request; you see only its tenant's data sets, jobs and models."),
    h("p", { class: "muted small" }, "No key yet? ", h("code", {}, "python -m app keys create --tenant you"),
      " (", h("code", {}, "scripts/serve.sh"), " prints a first one)."),
    message ? errorBox({ message }) : null,
    h("label", {}, "API key", input),
    h("div", {}, h("button", { id: "sign-in", type: "submit" }, "Sign in")),
    out,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(out);
    const key = input.value.trim();
    try {
      await get("/v1/datasets?limit=1", { key });
    } catch (error) {
      out.append(errorBox(error));
      return;
    }
    apiKey.set(key);
    location.hash = location.hash && location.hash !== "#/" ? location.hash : "#/datasets";
    route();
  });
  clear(root, form);
  input.focus();
}

async function route() {
  current?.close();
  if (!apiKey.get()) {
    signInPage();
    return;
  }
  document.getElementById("nav").hidden = false;
  document.getElementById("sign-out").hidden = false;
  const key = apiKey.get();
  document.getElementById("whoami").textContent = `key …${key.slice(-4)}`;
  const [path, queryText = ""] = (location.hash.slice(1) || "/datasets").split("?");
  const query = Object.fromEntries(new URLSearchParams(queryText));
  const match = ROUTES.map(([pattern, page, nav]) => [pattern.exec(path), page, nav]).find(([m]) => m);
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", Boolean(match) && link.dataset.nav === match[2]);
  }
  if (!match) {
    location.hash = "#/datasets";
    return;
  }
  const [found, page] = match;
  current = new PageContext();
  clear(root, h("p", { class: "muted" }, "Loading…"));
  try {
    await page(root, found.slice(1).map(decodeURIComponent), query, current);
  } catch (error) {
    if (error.status !== 401) clear(root, errorBox(error));
  }
}

onUnauthorized((error) => {
  apiKey.clear();
  current?.close();
  signInPage(`Signed out: ${error.message}`);
});
document.getElementById("sign-out").addEventListener("click", () => {
  apiKey.clear();
  route();
});
window.addEventListener("hashchange", route);
route();
