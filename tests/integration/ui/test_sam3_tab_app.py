"""The SAM 3 tab's app inside Airflow's real API server app (``create_app``, simple auth manager, auth on): who may
see a task's page, what each kind of task shows, files confined to the task's output location, a 100,000-row
manifest paged without being read whole."""

from __future__ import annotations

import html
import io
import json
import os
import re
import tracemalloc
import urllib.parse

import pytest
from airflow.sdk import dag, task
from photos import write_photos

from airflow_provider_sam3.operators.batch import Sam3BatchOperator
from airflow_provider_sam3.operators.sam3 import SegmentImageOperator

pytestmark = pytest.mark.timeout(600)


@dag(dag_id="sam3_tab_app", schedule=None, params={"images": "", "image": "", "out": ""})
def tab_dag():
    Sam3BatchOperator(
        task_id="batch",
        images="{{ params.images }}",
        output_path="{{ params.out }}/batch",
        arguments={"prompt": "box"},
        skip_invalid=True,
        on_image_failure="report",
    )
    SegmentImageOperator(
        task_id="single", image="{{ params.image }}", prompt="box", output_path="{{ params.out }}/single"
    )

    @task
    def plain():
        return {"kind": "not sam3", "value": 1}

    plain()


TAB_DAG = tab_dag()


@pytest.fixture(scope="module")
def ran(airflow_db, fal_emulator_server, tmp_path_factory):
    """One run of the DAG against the emulator: its run id, XComs and folders."""
    import fal_client.client

    folder = tmp_path_factory.mktemp("tab")
    photos = write_photos(folder / "in", 5, seed=21)
    (folder / "in" / "notes.png").write_text("not an image")
    emulator = fal_emulator_server
    emulator.reset(restore_config=True)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in emulator.env.items():
            patch.setenv(name, value)
        patch.setattr(fal_client.client, "QUEUE_URL_FORMAT", f"https://{emulator.host}/")
        dag_run = TAB_DAG.test(run_conf={"images": str(folder / "in"), "image": str(photos[0]), "out": str(folder)})
        returned = {ti.task_id: ti.xcom_pull(task_ids=ti.task_id) for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success", returned
    return {"run_id": dag_run.run_id, "returned": returned, "folder": folder}


@pytest.fixture(scope="module")
def api(airflow_db):
    """Airflow's API server app with the simple auth manager and real authorisation (not every user an admin)."""
    from airflow.api_fastapi.app import create_app, purge_cached_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.plugins_manager import get_fastapi_plugins
    from fastapi.testclient import TestClient

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
        patch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "sam3-tab-test-secret")
        patch.setenv(
            "AIRFLOW__CORE__AUTH_MANAGER",
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        )
        get_fastapi_plugins.cache_clear()
        app = create_app()
        manager = app.state.auth_manager

        def token(role):
            return manager.generate_jwt(SimpleAuthManagerUser(username=f"user-{role}", role=role))

        with TestClient(app) as client:
            yield client, {"viewer": token("viewer"), "nobody": token(None)}
        purge_cached_app()


def ti_url(run_id, task_id, suffix="", map_index="{MAP_INDEX}"):
    parts = [urllib.parse.quote(p, safe="") for p in ("sam3_tab_app", run_id, task_id, map_index)]
    return "/sam3/ti/" + "/".join(parts) + suffix


def get(api, url, who="viewer", **params):
    client, tokens = api
    headers = {"Authorization": f"Bearer {tokens[who]}"} if who else {}
    return client.get(url, headers=headers, params=params)


def test_the_tab_is_listed_for_task_instances_and_mounted_under_sam3(api):
    response = get(api, "/api/v2/plugins")
    assert response.status_code == 200, response.text
    [plugin] = [p for p in response.json()["plugins"] if p["name"] == "sam3"]
    [view] = plugin["external_views"]
    assert view["destination"] == "task_instance" and view["url_route"] == "sam3"
    assert view["href"].endswith("/sam3/ti/{DAG_ID}/{RUN_ID}/{TASK_ID}/{MAP_INDEX}")


@pytest.mark.parametrize("suffix", ["", "/overlay.png", "/manifest.jsonl", "/file?location=/etc/passwd"])
def test_anonymous_gets_401_a_user_without_access_403_a_viewer_200(api, ran, suffix):
    task_id = "single" if suffix == "/overlay.png" else "batch"
    url = ti_url(ran["run_id"], task_id, suffix)
    assert get(api, url, who=None).status_code == 401
    assert get(api, url, who="nobody").status_code == 403
    client, _ = api
    assert client.get(url, headers={"Authorization": "Bearer not-a-token"}).status_code == 403
    if "etc/passwd" not in suffix:
        response = get(api, url)
        assert response.status_code == 200, response.text
        assert "frame-ancestors 'self'" in response.headers["content-security-policy"]


def test_a_batch_page_counts_pages_and_shows_failures_with_their_reasons(api, ran):
    summary = ran["returned"]["batch"]
    page = get(api, ti_url(ran["run_id"], "batch")).text
    for name in ("images", "succeeded", "failed", "invalid"):
        assert f'data-count="{name}">{summary[name]}<' in page, name
    assert summary["invalid"] == 1 and summary["succeeded"] == 5
    assert page.count('class="sam3-thumb"') == 5
    invalid = get(api, ti_url(ran["run_id"], "batch"), status="invalid").text
    assert invalid.count('class="sam3-thumb"') == 0 and "notes.png" in invalid and "invalid:" in invalid
    thumbs = [html.unescape(s) for s in _attr(page, "sam3-thumb", "src")]
    path, _, query = thumbs[0].partition("?")
    response = get(api, path, **dict(urllib.parse.parse_qsl(query)))
    assert response.status_code == 200, response.text
    assert response.content[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = get(api, ti_url(ran["run_id"], "batch", "/manifest.jsonl"))
    assert manifest.status_code == 200
    assert [json.loads(line)["index"] for line in manifest.text.splitlines()] == list(range(6))


def test_a_thumbnail_position_that_is_not_its_rows_line_is_refused(api, ran):
    page = get(api, ti_url(ran["run_id"], "batch")).text
    query = dict(urllib.parse.parse_qsl(html.unescape(_attr(page, "sam3-thumb", "src")[0]).partition("?")[2]))
    at, index = int(query["at"]), int(query["index"])
    url = ti_url(ran["run_id"], "batch", "/thumb.png")
    assert get(api, url, at=at, index=index).status_code == 200
    assert get(api, url, at=at + 1, index=index).status_code == 404  # not the start of a line
    assert get(api, url, at=at, index=index + 1).status_code == 404  # the line of another image
    assert get(api, url, at=0, index=0).status_code == 404  # an invalid image: nothing to draw
    assert get(api, url, at=10**9, index=index).status_code == 404


def test_a_single_image_page_shows_each_mask_its_score_and_the_overlay(api, ran):
    document = ran["returned"]["single"]
    page = get(api, ti_url(ran["run_id"], "single")).text
    assert page.count("data-mask-index=") == len(document["masks"]) >= 1
    assert document["request_id"] in page
    for mask in document["masks"]:
        cell = page.split(f'data-mask-index="{mask["index"]}"', 1)[1].split("</tr>", 1)[0]
        assert ('class="score"></td>' in cell) if mask["score"] is None else (f"{mask['score']:.3f}" in cell)
    overlay = get(api, ti_url(ran["run_id"], "single", "/overlay.png"))
    assert overlay.status_code == 200 and overlay.headers["content-type"] == "image/png"
    import io

    from PIL import Image

    picture = Image.open(io.BytesIO(overlay.content))
    assert picture.size == (document["image"]["width"], document["image"]["height"])


def test_another_task_gets_a_short_not_a_sam3_page(api, ran):
    response = get(api, ti_url(ran["run_id"], "plain"))
    assert response.status_code == 200 and "not a SAM 3 task" in response.text
    assert get(api, ti_url(ran["run_id"], "no_such_task")).status_code == 404


def test_files_are_served_only_from_the_tasks_own_output_location(api, ran, tmp_path):
    document = ran["returned"]["single"]
    inside = document["masks"][0]["stored_url"]
    url = ti_url(ran["run_id"], "single", "/file")
    response = get(api, url, location=inside)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    folder = ran["folder"]
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG secret")
    request_folder = os.path.dirname(inside.removeprefix("file://"))
    os.symlink(secret, os.path.join(request_folder, "link.png"))
    page = open(os.path.join(request_folder, "page.html"), "w")
    page.write("<script>alert(1)</script>")
    page.close()
    for location in (
        "/etc/passwd",
        "file:///etc/passwd",
        f"{request_folder}/../../../../etc/passwd",
        f"{request_folder}/link.png",
        str(folder / "in" / "notes.png"),
        f"{request_folder}/missing.png",
    ):
        assert get(api, url, location=location).status_code == 404, location
    served = get(api, url, location=f"{request_folder}/page.html")
    assert served.status_code == 200 and served.headers["content-type"] == "application/octet-stream"
    assert served.headers["content-disposition"].startswith("attachment")


def test_a_100000_row_manifest_pages_without_being_read_whole(api, ran, tmp_path):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    manifest = tmp_path / "big" / "manifest.jsonl"
    manifest.parent.mkdir()
    with manifest.open("w") as out:
        for index in range(100_000):
            status = "failed" if index % 1000 == 7 else "succeeded"
            row = {
                "index": index,
                "source": f"/photos/{index:06d}.jpg",
                "status": status,
                "masks": [],
                "error": "HTTP 500" if status == "failed" else None,
                "padding": "x" * 200,
            }
            out.write(json.dumps(row) + "\n")
    summary = {
        "kind": "sam3.batch",
        "images": 100_000,
        "succeeded": 99_900,
        "failed": 100,
        "invalid": 0,
        "manifest": str(manifest),
        "endpoint_id": "fal-ai/sam-3/image",
    }
    with create_session() as session:
        XComModel.set(
            "return_value", summary, dag_id="sam3_tab_app", task_id="plain", run_id=ran["run_id"], session=session
        )
    try:
        tracemalloc.start()
        page = get(api, ti_url(ran["run_id"], "plain"), page=2000).text
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert "page 2000 of 2084" in page and 'data-index="95952"' in page
        assert peak < manifest.stat().st_size / 10, (peak, manifest.stat().st_size)
        failed = get(api, ti_url(ran["run_id"], "plain"), status="failed", page=3).text
        assert "page 3 of 3 (100 rows)" in failed and 'data-index="96007"' in failed
    finally:
        with create_session() as session:
            XComModel.set(
                "return_value",
                {"kind": "not sam3"},
                dag_id="sam3_tab_app",
                task_id="plain",
                run_id=ran["run_id"],
                session=session,
            )


def _attr(html, css_class, name):
    return re.findall(rf'class="{css_class}"[^>]*?{name}="([^"]*)"', html)


def test_the_extra_links_open_pages_that_exist(api, ran, fal_emulator_server):
    import ssl
    import urllib.request
    from types import SimpleNamespace

    from airflow_provider_sam3.links import BatchManifestLink, Sam3TabLink, request_link

    key = SimpleNamespace(dag_id="sam3_tab_app", run_id=ran["run_id"], task_id="batch", map_index=-1)
    tab = Sam3TabLink().get_link(None, ti_key=key)
    assert tab == f"/dags/sam3_tab_app/runs/{urllib.parse.quote(ran['run_id'], safe='')}/tasks/batch/plugin/sam3"
    mapped = Sam3TabLink().get_link(None, ti_key=SimpleNamespace(**{**vars(key), "map_index": 3}))
    assert mapped.endswith("/tasks/batch/mapped/3/plugin/sam3")
    manifest = get(api, BatchManifestLink().get_link(None, ti_key=key))
    assert manifest.status_code == 200 and len(manifest.text.splitlines()) == 6

    # The single task's "fal request" link, on the emulator: a page about that request (fal's own otherwise).
    document = ran["returned"]["single"]
    url = request_link(fal_emulator_server.host, document["request_id"])
    context = ssl.create_default_context(cafile=fal_emulator_server.cert_file)
    with urllib.request.urlopen(url, context=context, timeout=30) as response:
        page = response.read().decode()
    assert response.status == 200 and document["request_id"] in page and "fal-ai/sam-3/image" in page


class _TaskStore:
    """Writes task state store rows for one task instance, as the batch's own store would."""

    def __init__(self, run_id, task_id):
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from sqlalchemy import select

        self.where = {"dag_id": "sam3_tab_app", "run_id": run_id, "task_id": task_id, "map_index": -1}
        with create_session() as session:
            self.dag_run_id = session.scalar(
                select(DagRun.id).where(DagRun.dag_id == "sam3_tab_app", DagRun.run_id == run_id)
            )

    def set(self, key, value):
        from airflow.models.task_state_store import TaskStateStoreModel as Row
        from airflow.utils.session import create_session

        with create_session() as session:
            session.add(Row(**self.where, dag_run_id=self.dag_run_id, key=key, value=json.dumps(value)))

    def delete(self, key=None):
        from airflow.models.task_state_store import TaskStateStoreModel as Row
        from airflow.utils.session import create_session
        from sqlalchemy import delete

        with create_session() as session:
            session.execute(delete(Row).where(*(getattr(Row, k) == v for k, v in self.where.items())))


def test_a_batch_still_running_shows_its_progress_from_its_journal(api, ran):
    import time

    from airflow_provider_sam3.batch.state import BatchState
    from airflow_provider_sam3.models.batch import BatchEntry

    states = ["done"] * 3 + ["failed"] + ["submitted"] * 2 + ["pending"] * 4
    state = BatchState(endpoint_id="fal-ai/sam-3/image", started_at=time.time(), deadline=time.time() + 3600)
    for index, entry_state in enumerate(states):
        state.add(BatchEntry(index=index, source=f"/in/{index}.png", state=entry_state, submissions=1))
    store = _TaskStore(ran["run_id"], "plain")
    state.save(store)
    try:
        page = get(api, ti_url(ran["run_id"], "plain")).text
    finally:
        store.delete()
    counts = dict(re.findall(r'data-count="(\w+)">(\d+)<', page))
    assert counts == {"images": "10", "succeeded": "3", "failed": "1", "invalid": "0", "pending": "6"}, page
    assert "in progress" in page
    assert "not a SAM 3 task" in get(api, ti_url(ran["run_id"], "plain")).text  # the rows are gone again


def test_a_result_file_naming_a_photo_the_task_never_named_draws_no_such_photo(api, ran, tmp_path):
    from PIL import Image

    from airflow_provider_sam3.storage.batch_results import BatchResults

    page = get(api, ti_url(ran["run_id"], "batch")).text
    query = dict(urllib.parse.parse_qsl(html.unescape(_attr(page, "sam3-thumb", "src")[-1]).partition("?")[2]))
    row = BatchResults.from_xcom(ran["returned"]["batch"]).row_at(int(query["at"]), int(query["index"]))
    result_file = os.path.join(row.output_location.removeprefix("file://"), "result.json")
    document = json.load(open(result_file))
    secret = tmp_path / "private.png"  # a picture on the API server's disk that no task named
    Image.new("RGB", (document["image"]["width"], document["image"]["height"]), (255, 0, 0)).save(secret)
    document["image"]["source"] = str(secret)
    with open(result_file, "w") as out:
        json.dump(document, out)
    thumbnail = get(api, ti_url(ran["run_id"], "batch", "/thumb.png"), **query)
    assert thumbnail.status_code == 200
    pixels = Image.open(io.BytesIO(thumbnail.content)).convert("RGB").getdata()
    assert not [p for p in pixels if p[0] > 200 and p[1] < 60 and p[2] < 60][:1], "the private picture was drawn"
