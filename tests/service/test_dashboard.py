"""The dashboard and the docs pages in a real browser: headless Chromium driven by Selenium.

The app of the PostgreSQL + Redis stack (with its worker) is served over HTTP by uvicorn on a
spare port; the browser resolves no other host name (``--host-resolver-rules``), as on a machine
without internet. One test clicks through what a newcomer does: sign in, create a built-in data
set, submit a job from the form, watch its curve grow, open the model, draw samples over the
density heatmap, score points and check invariance. If Chromium or its driver cannot start, the
tests fail: ``scripts/install.sh`` installs both (``EFNF_TEST_CHROMIUM`` and
``EFNF_TEST_CHROMEDRIVER`` point elsewhere).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.service.private_servers import spare_port
from tests.service.stack import Stack, create_key

pytestmark = [
    pytest.mark.service,
    pytest.mark.timeout(240),
    pytest.mark.parametrize("stack", ["postgres"], indirect=True),
]

CHROMIUM = os.environ.get("EFNF_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("EFNF_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
WAIT_S = 30.0
TRAINING_WAIT_S = 150.0
# The job the form submits: tiny, so that it trains in seconds, with a metric row every 5 steps.
STEPS, METRIC_INTERVAL = 120, 5
JOB_FIELDS = {
    "flow.group": "C4",
    "flow.width": "2",
    "flow.depth": "1",
    "training.steps": str(STEPS),
    "training.batch_size": "64",
    "training.metric_interval": str(METRIC_INTERVAL),
    "training.checkpoint_interval": "40",
}
METRIC_POINTS = STEPS // METRIC_INTERVAL


@pytest.fixture(scope="module")
def base_url(stack: Stack) -> Iterator[str]:
    """The stack's app served over HTTP (the browser needs a real server), in a thread."""
    port = spare_port()
    config = uvicorn.Config(
        stack.client.app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="dashboard-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail(f"uvicorn did not start on port {port}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(WAIT_S)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        # No name resolves but the test server's address: a machine without internet.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except Exception as error:
        pytest.fail(
            f"headless Chromium ({CHROMIUM}, driver {CHROMEDRIVER}) could not start: {error}. "
            "Install the Debian packages chromium and chromium-driver (scripts/install.sh)."
        )
    try:
        yield driver
    finally:
        driver.quit()


def wait(
    driver: WebDriver,
    condition: Callable[[WebDriver], Any],
    timeout: float = WAIT_S,
    what: str = "",
) -> Any:
    """Waits for ``condition(driver)`` to be truthy; fails with the page's errors if not."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)
    except Exception:
        errors = [element.text for element in driver.find_elements(By.CSS_SELECTOR, ".error")]
        console = [entry["message"] for entry in driver.get_log("browser")]
        pytest.fail(f"timed out waiting for {what}; page errors {errors}; console {console}")


def by_id(driver: WebDriver, element_id: str) -> WebElement:
    return wait(driver, lambda d: d.find_element(By.ID, element_id), what=f"#{element_id}")


def same_origin_only(driver: WebDriver, base_url: str) -> list[str]:
    """The URLs the page loaded from anywhere but the test server."""
    loaded = driver.execute_script(
        "return performance.getEntriesByType('resource').map(entry => entry.name)"
    )
    return [url for url in loaded if not url.startswith(base_url)]


def severe_console_messages(driver: WebDriver) -> list[str]:
    # A 4xx answered on purpose (a 404 while a model has no checkpoint) is logged by the
    # browser as a failed resource; script errors are what matter here.
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and "Failed to load resource" not in entry["message"]
    ]


def test_sign_in_data_set_job_live_curve_samples_score(
    stack: Stack, base_url: str, browser: WebDriver
) -> None:
    tenant = "dashboard-tenant"
    key = create_key(stack.settings.database_url, tenant)
    # Another tenant's data set, which this key must not see.
    hidden = stack.client.post("/v1/datasets/builtin", json={"name": "rings", "n": 64}).json()

    browser.get(f"{base_url}/")
    by_id(browser, "api-key").send_keys("efnf_not_a_key")
    by_id(browser, "sign-in").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".error"), what="a refused key")
    by_id(browser, "api-key").clear()
    by_id(browser, "api-key").send_keys(key)
    by_id(browser, "sign-in").click()
    by_id(browser, "dataset-list")
    assert browser.execute_script("return sessionStorage.getItem('efnf.apiKey')") == key

    # A built-in data set, then its page with the preview.
    wait(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, "#builtin-name option[value=eight_gaussians]"),
        what="the built-in names (from the OpenAPI document)",
    )
    Select(by_id(browser, "builtin-name")).select_by_value("eight_gaussians")
    by_id(browser, "builtin-n").send_keys("1024")
    by_id(browser, "create-builtin").click()
    rows = wait(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, "#dataset-list tbody tr"),
        what="the new data set in the list",
    )
    assert [row.get_attribute("data-id") for row in rows] != [hidden["id"]]
    assert hidden["id"] not in browser.page_source
    rows[0].find_element(By.CSS_SELECTOR, "a").click()
    wait(
        browser,
        lambda d: d.execute_script(
            "const img = document.getElementById('dataset-preview');"
            "return img && img.complete && img.naturalWidth > 0"
        ),
        what="the data set's preview image",
    )

    # The job form, filled in from the schema's fields.
    by_id(browser, "train-on-dataset").click()
    by_id(browser, "job-form")
    for path, value in JOB_FIELDS.items():
        field = browser.find_element(By.CSS_SELECTOR, f'[data-path="{path}"]')
        field.clear()
        field.send_keys(value)
    assert browser.find_element(By.CSS_SELECTOR, '[data-path="training.steps"]').get_attribute(
        "max"
    ) == str(stack.settings.max_steps)
    by_id(browser, "submit-job").click()

    # The job page: the curve grows while the job trains.
    chart = by_id(browser, "loss-chart")
    wait(browser, lambda d: chart.get_attribute("data-points") is not None, what="the chart")
    seen = [int(chart.get_attribute("data-points"))]
    deadline = time.monotonic() + TRAINING_WAIT_S
    while time.monotonic() < deadline:
        seen.append(int(chart.get_attribute("data-points")))
        if browser.find_elements(By.CSS_SELECTOR, '#job-status [data-state="succeeded"]'):
            break
        assert not browser.find_elements(By.ID, "job-error"), by_id(browser, "job-error").text
        time.sleep(0.2)
    else:
        pytest.fail(f"the job did not succeed in {TRAINING_WAIT_S} s; points seen {seen}")
    wait(
        browser,
        lambda d: int(chart.get_attribute("data-points")) == METRIC_POINTS,
        what=f"{METRIC_POINTS} points on the curve",
    )
    assert seen[0] < METRIC_POINTS, f"the curve never grew on the page: {seen}"
    assert browser.find_elements(By.CSS_SELECTOR, "#loss-chart .uplot canvas")

    # The model: samples over the density heatmap (scored on a grid through the API).
    by_id(browser, "open-model").click()
    samples_n = by_id(browser, "sample-n")
    samples_n.clear()
    samples_n.send_keys("128")
    by_id(browser, "draw-samples").click()
    canvas = by_id(browser, "samples-canvas")
    wait(browser, lambda d: canvas.get_attribute("data-drawn") == "density", what="the heatmap")
    colours = browser.execute_script(
        "const c = document.getElementById('samples-canvas');"
        "const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "const seen = new Set(); for (let i = 0; i < data.length; i += 4 * 97)"
        " seen.add(data[i] + ',' + data[i + 1] + ',' + data[i + 2]); return seen.size"
    )
    assert colours > 20, f"the heatmap has {colours} colours"

    # Scoring the default points, then the invariance check on the first one.
    by_id(browser, "score").click()
    score_rows = wait(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, "#score-table tbody tr"),
        what="the scores",
    )
    assert len(score_rows) == 3
    log_probs = [float(row.find_elements(By.TAG_NAME, "td")[1].text) for row in score_rows]
    model_id = browser.current_url.rsplit("/", 1)[-1]
    expected = stack.client.post(
        f"/v1/models/{model_id}/log-prob",
        json={"inputs": [[3, 1.5], [4, 0], [0, 0]]},
        headers={"Authorization": f"Bearer {key}"},
    ).json()["log_prob"]
    assert log_probs == pytest.approx(expected, abs=1e-4)
    by_id(browser, "check-invariance").click()
    rows = wait(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, "#invariance-table tbody tr"),
        what="the invariance table",
    )
    assert len(rows) == 4 + 2  # C4's four rotations and two controls outside the group
    assert float(by_id(browser, "invariance-spread").text) < 1e-3

    # The models page lists it (from GET /v1/models where the server has it, else the jobs).
    browser.get(f"{base_url}/#/models")
    wait(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, f'#model-list tr[data-id="{model_id}"]'),
        what="the model in the list",
    )

    # "Train again": the form comes filled in from the job; the server's refusal marks the
    # field it names; a long run is cancelled from its page.
    browser.get(f"{base_url}/#/jobs/{model_id}")
    by_id(browser, "train-again").click()
    group = by_id(browser, "job-form").find_element(By.CSS_SELECTOR, '[data-path="flow.group"]')
    wait(browser, lambda d: group.get_attribute("value") == "C4", what="the job's own group")
    group.clear()
    group.send_keys("C99")
    by_id(browser, "submit-job").click()
    wait(browser, lambda d: "invalid" in group.get_attribute("class"), what="flow.group marked")
    assert "C99" in by_id(browser, "submit-result").text
    group.clear()
    group.send_keys("C4")
    steps = browser.find_element(By.CSS_SELECTOR, '[data-path="training.steps"]')
    steps.clear()
    steps.send_keys("100000")
    by_id(browser, "submit-job").click()
    wait(browser, lambda d: "/jobs/job_" in d.current_url, what="the new job's page")
    by_id(browser, "cancel-job").click()
    wait(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, '#job-status [data-state="cancelled"]'),
        what="the job cancelled",
    )

    # Both runs compared on one chart.
    browser.get(f"{base_url}/#/jobs")
    boxes = wait(
        browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".compare-box"), what="the jobs"
    )
    assert len(boxes) == 2  # this tenant's jobs only
    for box in boxes:
        box.click()
    by_id(browser, "compare-selected").click()
    wait(
        browser,
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#compare-chart .u-legend .u-series")) == 3,
        what="the comparison chart with both jobs",
    )
    assert same_origin_only(browser, base_url) == []
    assert severe_console_messages(browser) == []


@pytest.mark.parametrize(
    ("page", "rendered"),
    [("/docs", ".opblock"), ("/redoc", "[data-section-id^='operation/']")],
)
def test_docs_render_every_operation_without_internet(
    stack: Stack, base_url: str, browser: WebDriver, page: str, rendered: str
) -> None:
    document = stack.client.get("/openapi.json").json()
    operations = sum(len(item) for item in document["paths"].values())
    browser.get(f"{base_url}{page}")
    wait(
        browser,
        lambda d: len(d.find_elements(By.CSS_SELECTOR, rendered)) == operations,
        what=f"{operations} operations on {page}",
    )
    assert same_origin_only(browser, base_url) == []
