"""The recruiter's web page, driven in headless Chromium against the real Serve app and Ray.

The tests run in order and share one page: upload, job, match, profile, delete, reverse
matching, phone width, API keys. Chromium and its driver are the system's (apt: chromium,
chromium-driver); nothing is downloaded. Screenshots of each view go to
``$CVMATCH_SCREENSHOTS`` (default: a pytest temporary folder).
"""

from __future__ import annotations

import base64
import csv
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import API_TIMEOUT, EXAMPLES, Server
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("CVMATCH_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CVMATCH_CHROMEDRIVER", "/usr/bin/chromedriver")
WAIT = 180.0

GOOD = [EXAMPLES / "cvs" / "amelie_dubois_backend.pdf", EXAMPLES / "cvs" / "chen_wei_devops.md"]
DROPPED = EXAMPLES / "cvs" / "jose_garcia_accountant.txt"
BAD = {EXAMPLES / "bad" / "encrypted.pdf": "password-protected", EXAMPLES / "bad" / "empty.txt": "empty"}
JD = EXAMPLES / "jds" / "senior_python_backend.txt"
OTHER_JD = EXAMPLES / "jds" / "staff_accountant.md"

if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    if os.environ.get("CVMATCH_REQUIRE_BROWSER") == "1":  # scripts/test.sh: the browser must be there
        raise RuntimeError(f"CVMATCH_REQUIRE_BROWSER=1 but {CHROMIUM} or {CHROMEDRIVER} is missing")
    pytest.skip("needs the system's chromium and chromium-driver (scripts/test.sh installs them)",
                allow_module_level=True)


class Page:
    """The browser on the page, and where its screenshots and downloads go."""

    def __init__(self, driver: Any, url: str, shots: Path, downloads: Path) -> None:
        self.driver = driver
        self.url = url
        self.shots = shots
        self.downloads = downloads

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def until(self, condition: Callable[[], Any], timeout: float = WAIT, message: str = "") -> Any:
        # An element re-rendered while the condition reads it: not yet, look again.
        wait = WebDriverWait(self.driver, timeout, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,))
        return wait.until(lambda _: condition(), message)

    def shot(self, name: str, css: str | None = None) -> Path:
        """A screenshot of the window, or of one element of it."""
        path = self.shots / f"{name}.png"
        if css:
            element = self.find(css)
            self.driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", element)
            element.screenshot(str(path))
        else:
            self.driver.save_screenshot(str(path))
        return path

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)


@pytest.fixture(scope="module")
def page(server: Server, tmp_path_factory) -> Iterator[Page]:
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    shots = Path(os.environ.get("CVMATCH_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    downloads = tmp_path_factory.mktemp("downloads")
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--lang=en-GB", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        driver.get(server.url + "/")
        p = Page(driver, server.url, shots, downloads)
        p.until(lambda: p.find("body").get_attribute("data-ready") == "true", 60, "the page never reached /api/health")
        yield p
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def api(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=API_TIMEOUT) as c:
        yield c


def upload_rows(page: Page) -> list[WebElement]:
    return page.all("#uploads tbody tr")


def settled(page: Page, n: int) -> bool:
    rows = upload_rows(page)
    return len(rows) == n and all(r.get_attribute("data-state") in ("done", "duplicate", "failed") for r in rows)


def ranking_ids(page: Page) -> list[str]:
    return [r.get_attribute("data-cv-id") for r in page.all("#ranking-table tbody tr")]


def chip_texts(row: WebElement, label: str) -> list[str]:
    lists = row.find_elements(By.CSS_SELECTOR, f'ul.chips[aria-label="{label}"]')
    return [c.text for c in lists[0].find_elements(By.CSS_SELECTOR, "li")] if lists else []


# ------------------------------------------------------------------------------ tests


def test_page_and_its_files_load_and_every_control_is_labelled(page: Page, api: httpx.Client) -> None:
    r = api.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "script-src 'self'" in r.headers["content-security-policy"]
    for path in ("/web/main.js", "/web/app.css", "/web/icon.svg"):
        assert api.get(path).status_code == 200, path
    # The page stays out of the API's own description.
    assert "/" not in api.get("/openapi.json").json()["paths"]
    unlabelled = page.js(
        "return [...document.querySelectorAll('input, select, textarea, button')]"
        ".filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())"
        ".map(e => e.id || e.outerHTML)")
    assert unlabelled == []
    assert page.find("#blind").is_selected()  # blind mode is on by default


def test_upload_many_files_shows_steps_failures_and_duplicates(page: Page) -> None:
    picked = [*GOOD, *BAD]
    page.find("#cv-files").send_keys("\n".join(str(p) for p in picked))
    # Drag and drop: the drop zone receives a file the way a browser hands it over.
    page.js(
        "const [name, b64] = arguments;"
        "const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));"
        "const dt = new DataTransfer(); dt.items.add(new File([bytes], name, {type: 'text/plain'}));"
        "document.getElementById('drop').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));",
        DROPPED.name, base64.b64encode(DROPPED.read_bytes()).decode(),
    )
    n = len(picked) + 1
    page.until(lambda: settled(page, n), message="uploads did not finish")
    rows = {r.get_attribute("data-file"): r for r in upload_rows(page)}
    for path in [*GOOD, DROPPED]:
        row = rows[path.name]
        assert row.get_attribute("data-state") == "done", row.text
        assert row.get_attribute("data-cv-id")
        assert row.find_element(By.CSS_SELECTOR, "progress").get_attribute("value") == "100"
        steps = [li.text for li in row.find_elements(By.CSS_SELECTOR, ".steps li")]
        assert steps[1:5] == ["extracting", "standardizing", "embedding", "storing"]
        assert all(li.get_attribute("data-state") == "done" for li in row.find_elements(By.CSS_SELECTOR, ".steps li"))
    for path, words in BAD.items():
        row = rows[path.name]
        assert row.get_attribute("data-state") == "failed"
        assert words in row.find_element(By.CSS_SELECTOR, ".reason").text, row.text
    page.shot("01-upload", "#cvs")

    # The same bytes again: shown as already stored, nothing processed again.
    page.find("#cv-files").send_keys(str(GOOD[0]))
    page.until(lambda: settled(page, n + 1), message="the duplicate did not settle")
    again = upload_rows(page)[-1]
    assert again.get_attribute("data-state") == "duplicate"
    assert "already stored" in again.text
    assert again.get_attribute("data-cv-id") == rows[GOOD[0].name].get_attribute("data-cv-id")


def test_job_description_is_shown_as_understood(page: Page, api: httpx.Client) -> None:
    text = JD.read_text()
    page.js("document.getElementById('jd-text').value = arguments[0]", text)
    page.find("#jd-form button[type=submit]").click()
    page.until(lambda: page.find("#jd-profile").is_displayed(), 60, "the JD was not shown")
    jd_id = page.find("#jd-profile").get_attribute("data-jd-id")
    expected = api.get(f"/api/jds/{jd_id}").json()["profile"]
    assert page.find("#jd-title").text == expected["title"]
    assert [c.text for c in page.all("#jd-required li")] == expected["required_skills"]
    assert [c.text for c in page.all("#jd-preferred li")] == expected["preferred_skills"]
    if expected["min_years"] is not None:
        assert page.find("#jd-years").text.startswith(f"{expected['min_years']:g}")
    assert page.find("#match-btn").is_enabled()
    page.shot("02-job", "#job")


def test_match_ranks_like_the_api_with_chips_evidence_and_csv(page: Page, api: httpx.Client) -> None:
    chunk = page.find("#chunk-size")
    chunk.clear()
    chunk.send_keys("1")  # one CV a chunk: the bar moves chunk by chunk
    page.find("#match-btn").click()
    page.until(lambda: page.find("#ranking").get_attribute("data-complete") == "true", message="the match did not end")
    job_id = page.find("#ranking").get_attribute("data-job-id")
    assert "3 of 3 chunks" in page.find("#match-status").text
    assert not page.find("#match-cancel").is_displayed()  # offered only while a job runs
    body = api.get(f"/api/match-results/{job_id}").json()
    assert body["complete"] and body["count"] == 3
    results = body["results"]
    assert ranking_ids(page) == [r["cv_id"] for r in results]
    rows = page.all("#ranking-table tbody tr")
    for row, r in zip(rows, results, strict=True):
        assert row.find_element(By.CSS_SELECTOR, ".score").text == f"{r['score']:.1f}"
        assert chip_texts(row, "Matched skills") == r["matched_skills"]
        assert chip_texts(row, "Missing required skills") == r["missing_required"]
        assert len(row.find_elements(By.CSS_SELECTOR, ".comps .bar")) == 6
        # Blind mode: no file name (it often is the candidate's name) in the ranking.
        assert row.find_element(By.CSS_SELECTOR, ".candidate").text.startswith("Candidate ")
    first = rows[0]
    first.find_element(By.CSS_SELECTOR, "summary").click()
    evidence = first.find_elements(By.CSS_SELECTOR, ".evidence li")
    assert len(evidence) == len(results[0]["evidence"]) > 0
    assert results[0]["evidence"][0]["requirement"] in evidence[0].text
    page.shot("03-ranking", "#ranking")

    page.find("#export-csv").click()
    page.until(lambda: any(page.downloads.glob("*.csv")) and not any(page.downloads.glob("*.crdownload")), 30)
    with next(page.downloads.glob("*.csv")).open(newline="") as f:
        exported = list(csv.DictReader(f))
    assert [row["cv_id"] for row in exported] == [r["cv_id"] for r in results]
    assert [float(row["score"]) for row in exported] == [round(r["score"], 2) for r in results]
    assert "filename" not in exported[0]


def test_profile_hides_contact_until_revealed(page: Page, api: httpx.Client) -> None:
    cv_id = ranking_ids(page)[0]
    contact = api.get(f"/api/cvs/{cv_id}").json()["profile"]["contact"]
    assert contact["name"] and contact["email"]
    opener = page.find(f'#ranking-table tr[data-cv-id="{cv_id}"] button[data-action=profile]')
    opener.click()
    dialog = page.find("#profile")
    page.until(lambda: dialog.is_displayed(), 30)
    page.until(lambda: page.find("#profile-body h3") is not None, 10)
    hidden = dialog.text
    assert contact["name"] not in hidden and contact["email"] not in hidden
    assert "hidden" in page.find("#contact").text
    assert "Experience" in hidden and "Education" in hidden and "Skills" in hidden
    page.shot("04-profile-blind")
    page.find("#reveal").click()
    assert page.find("#profile-h").text == contact["name"]
    assert contact["email"] in page.find("#contact").text
    assert page.find("#reveal").get_attribute("aria-pressed") == "true"
    page.shot("05-profile-revealed")
    # Keyboard: Escape closes the dialog and focus goes back to the button that opened it.
    page.driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    page.until(lambda: not dialog.is_displayed(), 10)
    assert page.driver.switch_to.active_element == opener


def test_delete_removes_the_cv_everywhere(page: Page, api: httpx.Client) -> None:
    cv_id = ranking_ids(page)[-1]
    page.find(f'#ranking-table tr[data-cv-id="{cv_id}"] button[data-action=delete]').click()
    page.until(lambda: _alert(page), 10).accept()
    page.until(lambda: cv_id not in ranking_ids(page), 30, "the deleted CV is still ranked")
    assert api.get(f"/api/cvs/{cv_id}").status_code == 404
    row = page.find(f'#uploads tr[data-cv-id="{cv_id}"]')
    assert row.get_attribute("data-state") == "deleted"
    assert cv_id not in [o.get_attribute("value") for o in page.all("#reverse-cv option")]


def _alert(page: Page) -> Any:
    try:
        return page.driver.switch_to.alert
    except NoAlertPresentException:  # not yet: keep waiting
        return None


def test_reverse_match_lists_the_best_jobs_for_a_cv(page: Page, api: httpx.Client) -> None:
    other = api.post("/api/upload-jd", files={"file": (OTHER_JD.name, OTHER_JD.read_bytes(), "text/markdown")})
    assert other.status_code == 200
    cv_id = ranking_ids(page)[0]
    page.find(f'#ranking-table tr[data-cv-id="{cv_id}"] button[data-action=jobs]').click()
    page.until(lambda: page.find("#jobs-table").get_attribute("data-cv-id") == cv_id, 60)
    expected = api.post("/api/match-jobs", json={"cv_id": cv_id}).json()["results"]
    rows = page.all("#jobs-table tbody tr")
    assert [r.get_attribute("data-jd-id") for r in rows] == [r["jd_id"] for r in expected]
    assert len(rows) == 2
    titles = [r.find_element(By.CSS_SELECTOR, ".job").text for r in rows]
    assert set(titles) == {api.get(f"/api/jds/{r['jd_id']}").json()["profile"]["title"] for r in expected}
    assert page.find("#reverse-cv").get_attribute("value") == cv_id
    page.shot("06-reverse", "#reverse")


def test_phone_width_has_no_sideways_scroll(page: Page) -> None:
    page.driver.set_window_size(390, 844)
    try:
        page.until(lambda: page.js("return window.innerWidth") <= 400, 10)
        assert page.js("return document.documentElement.scrollWidth <= window.innerWidth")
        assert page.js("return getComputedStyle(document.querySelector('#ranking-table tbody tr')).display") == "block"
        page.js("document.getElementById('ranking').scrollIntoView()")
        page.shot("07-phone")
    finally:
        page.driver.set_window_size(1280, 1000)


def test_api_key_is_asked_for_and_sent(page: Page, server: Server) -> None:
    """Last: redeploys the app with keys on."""
    from ray import serve

    from cvmatch_ray.serve.app import APP_NAME, build_app

    serve.run(build_app(server.args(api_keys=["k-web"])), name=APP_NAME, route_prefix="/")
    page.js("sessionStorage.clear()")
    page.driver.get(server.url + "/")  # the page and its files load without a key
    page.until(lambda: "needs an API key" in page.find("#server-info").text, 60)
    page.js("document.getElementById('jd-text').value = arguments[0]", OTHER_JD.read_text())
    page.find("#jd-form button[type=submit]").click()
    page.until(lambda: page.find("#jd-error").is_displayed(), 30)
    assert "API key" in page.find("#jd-error").text
    key = page.find("#api-key")
    key.send_keys("k-web", Keys.TAB)
    page.until(lambda: "API key set" in page.find("#server-info").text, 30)
    assert page.js("return sessionStorage.getItem('cvmatch.apiKey')") == "k-web"
    page.find("#jd-form button[type=submit]").click()
    try:
        page.until(lambda: page.find("#jd-profile").is_displayed(), 60)
    except TimeoutException:
        pytest.fail(f"the JD was refused with the key: {page.find('#jd-error').text}")
    stored = httpx.post(server.url + "/api/upload-jd", json={"text": OTHER_JD.read_text()},
                        headers={"X-API-Key": "k-web"}, timeout=API_TIMEOUT).json()
    assert page.find("#jd-title").text == stored["profile"]["title"]
    assert not page.find("#jd-error").is_displayed()

