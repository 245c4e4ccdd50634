"""The SAM 3 tab in a real browser: headless Chromium logs in to a real ``airflow standalone`` (SimpleAuthManager
with real users) as a viewer, opens a batch task's and a single-image task's SAM 3 tab, and sees what the tasks
stored: the batch's counts as its manifest has them, every thumbnail and overlay loaded, one table row per mask.
The tab's own URL is refused to an anonymous request (401) and to a user without a role (403).

Screenshots of both tabs go to ``test-artifacts/browser/``; with ``SAM3_README_SCREENSHOT=1`` the batch one is also
copied to ``docs/sam3-tab.png``.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from browser_session import ARTIFACTS, USERS
from manifests import find_manifest
from PIL import Image, ImageOps
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from airflow_provider_sam3.samples import sample_photo
from airflow_provider_sam3.samples.demo_photos import DEMO_PHOTOS
from airflow_provider_sam3.storage.batch_results import BatchResults

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(360)]

README_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "sam3-tab.png"
TAB_TITLE = "SAM 3"  # the external view's name: Airflow's UI gives the tab's iframe this title
COUNTS = ("images", "succeeded", "failed", "invalid", "pending")

DAG = """
import pendulum
from airflow.sdk import dag, task

from airflow_provider_sam3.operators.batch import Sam3BatchOperator
from airflow_provider_sam3.operators.sam3 import SegmentImageOperator


@dag(dag_id="{dag_id}", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False,
     tags=["browser-test"])
def the_dag():
    Sam3BatchOperator(
        task_id="segment_folder",
        images=__IMAGES__,
        output_path=__BATCH_OUT__,
        arguments={"prompt": "box"},
        deferrable=True,
        poll_interval=0.5,
        retries=2,  # Airflow 3.3.2's resume race (see test_sam3_deployment)
        retry_delay=1,
    )
    SegmentImageOperator(
        task_id="segment_one",
        image=__ONE_IMAGE__,
        prompt="box",
        return_multiple_masks=True,
        include_scores=True,
        output_path=__SINGLE_OUT__,
        retries=2,
        retry_delay=1,
    )

    @task
    def plain():
        return "no masks here"

    plain()


the_dag()
"""


def write_folder(folder: Path) -> list[Path]:
    """Six real photographs: the demo's five and the cat once more, mirrored (other bytes, so not a repeat)."""
    folder.mkdir(parents=True)
    paths = []
    for photo in DEMO_PHOTOS:
        paths.append(Path(shutil.copy(photo.path(), folder / Path(photo.file).name)))
    cat = next(p for p in DEMO_PHOTOS if p.name == "chelsea")
    mirrored = folder / "chelsea_mirrored.png"
    ImageOps.mirror(Image.open(cat.path()).convert("RGB")).save(mirrored)
    paths.append(mirrored)
    return paths


def http_status(url: str, token: str | None = None) -> int:
    """The status of a plain GET (no cookie), with a bearer token or none."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as error:
        return error.code


def log_in(browser, base: str, username: str) -> None:
    browser.get(f"{base}/auth/login")
    wait = WebDriverWait(browser, 120)
    wait.until(ec.visibility_of_element_located((By.NAME, "username"))).send_keys(username)
    browser.find_element(By.NAME, "password").send_keys(USERS[username][1])
    browser.find_element(By.XPATH, "//button[normalize-space()='Sign in']").click()
    wait.until(lambda b: b.get_cookie("_token"), message="no _token cookie after signing in")


def open_tab(browser, base: str, dag_id: str, run_id: str, task_id: str) -> str:
    """Open the task instance's SAM 3 tab, switch into its iframe once the page there has loaded; its src."""
    run = urllib.parse.quote(run_id, safe="")
    browser.switch_to.default_content()
    browser.get(f"{base}/dags/{dag_id}/runs/{run}/tasks/{task_id}/plugin/sam3")
    frame = (By.CSS_SELECTOR, f'iframe[title="{TAB_TITLE}"]')
    src = (
        WebDriverWait(browser, 60)
        .until(ec.presence_of_element_located(frame), message=f"no iframe titled {TAB_TITLE!r}")
        .get_attribute("src")
    )
    WebDriverWait(browser, 120).until(ec.frame_to_be_available_and_switch_to_it(frame))
    WebDriverWait(browser, 120).until(lambda b: b.execute_script("return document.readyState") == "complete")
    return src


def wait_images_loaded(browser, css: str) -> int:
    """Scroll every ``css`` image into view (thumbnails load lazily) and wait until each decoded a picture."""
    images = browser.find_elements(By.CSS_SELECTOR, css)
    for image in images:
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", image)
        WebDriverWait(browser, 120).until(
            lambda b, img=image: b.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth > 0;", img
            ),
            message=f"{css} {image.get_attribute('src')} never loaded a picture",
        )
    browser.execute_script("window.scrollTo(0, 0);")
    return len(images)


def screenshot(browser, name: str) -> Path:
    """The whole Airflow page (the tab's iframe in it)."""
    browser.switch_to.default_content()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    assert browser.save_screenshot(str(path)), path
    return path


def manifest_counts(summary: dict) -> dict[str, int]:
    """The tab's counts as the batch's manifest has them: rows by status, anything unfinished as pending."""
    statuses = Counter(row.status for row in BatchResults.from_xcom(summary))
    counts = {name: statuses.pop(name, 0) for name in ("succeeded", "failed", "invalid")}
    return {"images": sum(counts.values()) + sum(statuses.values()), **counts, "pending": sum(statuses.values())}


def test_viewer_sees_the_sam3_tab_of_a_batch_and_of_a_single_image(
    authed_deployment, authed_dag_writer, fal_emulator, browser, tmp_path
):
    dep = authed_deployment
    base = dep.base_url
    photos = write_folder(tmp_path / "photos")
    source = (
        DAG.replace("__IMAGES__", repr(str(photos[0].parent)))
        .replace("__BATCH_OUT__", repr(str(tmp_path / "batch-out")))
        .replace("__ONE_IMAGE__", repr(sample_photo("coffee")))
        .replace("__SINGLE_OUT__", repr(str(tmp_path / "single-out")))
    )
    # The harness's own REST calls carry the admin's token; without one Airflow refuses them.
    assert "sam3" in {plugin["name"] for plugin in dep.api("GET", "/api/v2/plugins")["plugins"]}
    assert http_status(f"{base}/api/v2/plugins") == 401
    dag_id = authed_dag_writer(source)
    run_id = dep.trigger(dag_id)
    assert dep.wait_for_run(dag_id, run_id, timeout=180) == "success", dep.task_instances(dag_id, run_id)

    summary = dep.xcom(dag_id, run_id, "segment_folder")
    assert Path(summary["manifest"].removeprefix("file://")) == find_manifest(tmp_path / "batch-out")
    expected = manifest_counts(summary)
    assert expected == {"images": 6, "succeeded": 6, "failed": 0, "invalid": 0, "pending": 0}, expected
    document = dep.xcom(dag_id, run_id, "segment_one")
    assert len(document["masks"]) >= 1, document

    # The tab's own URL, without a browser: no credentials, a user without a role, a viewer.
    run = urllib.parse.quote(run_id, safe="")
    page_url = f"{base}/sam3/ti/{dag_id}/{run}/segment_folder/-1"
    assert http_status(page_url) == 401
    assert http_status(page_url, dep.login_token("nobody")) == 403
    assert http_status(page_url, dep.login_token("viewer")) == 200

    log_in(browser, base, "viewer")

    # The batch: counts as in its manifest, every thumbnail a loaded picture.
    src = open_tab(browser, base, dag_id, run_id, "segment_folder")
    assert urllib.parse.urlsplit(src).path.startswith(f"/sam3/ti/{dag_id}/{run}/segment_folder/"), src
    WebDriverWait(browser, 120).until(ec.presence_of_element_located((By.ID, "sam3-counts")))
    shown = {
        element.get_attribute("data-count"): int(element.text)
        for element in browser.find_elements(By.CSS_SELECTOR, "#sam3-counts [data-count]")
        if element.get_attribute("data-count") in COUNTS
    }
    assert shown == expected, (shown, expected)
    assert wait_images_loaded(browser, "img.sam3-thumb") == expected["succeeded"]
    batch_png = screenshot(browser, "batch-tab.png")

    # The single image: the overlay loaded, one table row per mask of the task's document.
    open_tab(browser, base, dag_id, run_id, "segment_one")
    WebDriverWait(browser, 120).until(ec.presence_of_element_located((By.ID, "sam3-masks")))
    assert wait_images_loaded(browser, "img.sam3-overlay") == 1
    rows = browser.find_elements(By.CSS_SELECTOR, "#sam3-masks tr[data-mask-index]")
    assert len(rows) == len(document["masks"]), browser.page_source[:3000]
    assert all(len(row.find_elements(By.TAG_NAME, "td")) >= 2 for row in rows)  # the mask and its score, at least
    screenshot(browser, "single-tab.png")

    # The same pages opened directly (map index -1), and a task that is not a SAM 3 one.
    browser.get(page_url)
    WebDriverWait(browser, 120).until(ec.presence_of_element_located((By.ID, "sam3-counts")))
    assert wait_images_loaded(browser, "img.sam3-thumb") == expected["succeeded"]
    browser.get(f"{base}/sam3/ti/{dag_id}/{run}/plain/-1")
    WebDriverWait(browser, 120).until(lambda b: "not a SAM 3 task" in b.find_element(By.TAG_NAME, "body").text)

    if os.environ.get("SAM3_README_SCREENSHOT") == "1":
        shutil.copyfile(batch_png, README_SCREENSHOT)
    print(f"\n[browser] screenshots in {ARTIFACTS}; the batch tab's iframe src {src}; counts {json.dumps(shown)}")
