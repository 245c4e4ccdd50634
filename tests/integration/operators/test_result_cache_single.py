"""The result cache on the single-image operators, against the emulator over TLS with the real hook: a second run
of the same request sends nothing and gives the same document and files; anything that changes what fal computes
misses; a damaged entry is refilled with one billed request; the deferrable path keeps its result too."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
from airflow.sdk import dag
from documents import stable
from engine_runs import PlainStore

from airflow_provider_sam3.operators.sam3 import EmbedImageOperator, SegmentImageOperator


def segment(photo, cache, out, *, prompt="square", operator=SegmentImageOperator, **kwargs):
    """One task instance of its own run (a fresh task state store): nothing but the cache is shared."""
    task = operator(
        task_id="seg",
        image=str(photo),
        deferrable=False,
        poll_interval=0.2,
        output_path=str(out) if out is not None else None,
        result_cache=str(cache),
        **({"prompt": prompt, "include_scores": True} if operator is SegmentImageOperator else {}),
        **kwargs,
    )
    return task.execute({"task_state_store": PlainStore(), "dag_run": SimpleNamespace(clear_number=0)})


def submissions(fal_emulator) -> int:
    return fal_emulator.counters()["submissions"]["total"]


def read(location: str) -> bytes:
    from pathlib import Path

    from airflow_provider_sam3.guards.files import local_path

    return Path(local_path(location)).read_bytes()


def stored_files(document) -> dict[str, bytes]:
    paths = [mask["stored_url"] for mask in document["masks"]]
    paths += [document["preview"]["stored_url"]] if document.get("preview") else []
    return {path.rsplit("/", 1)[1]: read(path) for path in paths}


def test_a_second_run_sends_nothing_and_gives_the_same_document_and_files(photo, tmp_path, fal_emulator):
    first = segment(photo, tmp_path / "cache", tmp_path / "out-1")
    assert first["cache"] == {"key": first["cache"]["key"], "hit": False, "request_id": None, "saved_usd": None}
    second = segment(photo, tmp_path / "cache", tmp_path / "out-2")
    assert submissions(fal_emulator) == 1 == fal_emulator.counters()["billed"]
    assert second["cache"]["hit"] is True and second["cache"]["request_id"] == first["request_id"]
    assert second["cache"]["key"] == first["cache"]["key"] and second["cache"]["saved_usd"] == first["cost_usd"]
    assert stable(second, also=frozenset({"cache"})) == stable(first, also=frozenset({"cache"})) and second["masks"]
    assert f"{tmp_path / 'out-2'}/{first['request_id']}" in second["output_location"]  # copied from the cache
    assert stored_files(second) == stored_files(first)


def test_the_same_bytes_under_another_name_hit_and_a_changed_prompt_or_image_misses(photo, tmp_path, fal_emulator):
    cache = tmp_path / "cache"
    segment(photo, cache, tmp_path / "out-1")
    renamed = tmp_path / "elsewhere" / "same-photo.png"
    renamed.parent.mkdir()
    shutil.copy(photo, renamed)
    assert segment(renamed, cache, tmp_path / "out-2")["cache"]["hit"] is True
    assert submissions(fal_emulator) == 1
    assert segment(photo, cache, tmp_path / "out-3", prompt="circle")["cache"]["hit"] is False
    assert submissions(fal_emulator) == 2
    from PIL import Image

    changed = tmp_path / "changed.png"
    image = Image.open(photo).convert("RGB")
    image.putpixel((0, 0), (255, 0, 0))
    image.save(changed)
    assert segment(changed, cache, tmp_path / "out-4")["cache"]["hit"] is False
    assert submissions(fal_emulator) == 3 == fal_emulator.counters()["billed"]


@pytest.mark.parametrize("damage", ["truncated-file", "edited-json"])
def test_a_damaged_entry_is_detected_and_refilled_with_one_billed_request(damage, photo, tmp_path, fal_emulator, capfd):
    cache = tmp_path / "cache"
    first = segment(photo, cache, tmp_path / "out-1")
    entry = next((cache / "v1").glob("*/*"))
    if damage == "truncated-file":
        victim = next(next(p for p in entry.iterdir() if p.is_dir()).iterdir())
        victim.write_bytes(victim.read_bytes()[:-5])
    else:
        text = (entry / "entry.json").read_text()
        (entry / "entry.json").write_text(text.replace(first["request_id"], "someone-else", 1))
        (entry / "entry.json").write_text((entry / "entry.json").read_text().replace('"size": ', '"size": 1', 1))
    capfd.readouterr()
    refilled = segment(photo, cache, tmp_path / "out-2")
    out, err = capfd.readouterr()
    assert refilled["cache"]["hit"] is False and "is damaged and is ignored" in out + err
    assert submissions(fal_emulator) == 2 == fal_emulator.counters()["billed"]
    again = segment(photo, cache, tmp_path / "out-3")
    assert again["cache"]["hit"] is True and again["cache"]["request_id"] == refilled["request_id"]
    assert submissions(fal_emulator) == 2


def test_modes_read_write_and_refresh(photo, tmp_path, fal_emulator):
    cache = tmp_path / "cache"
    assert segment(photo, cache, tmp_path / "o1", cache_mode="read")["cache"] is None  # read only: nothing kept
    assert not (cache / "v1").exists()
    first = segment(photo, cache, tmp_path / "o2", cache_mode="write")
    assert first["cache"]["hit"] is False
    refreshed = segment(photo, cache, tmp_path / "o3", cache_mode="refresh")  # pays again, replaces the entry
    assert refreshed["cache"]["hit"] is False and submissions(fal_emulator) == 3
    hit = segment(photo, cache, tmp_path / "o4")
    assert hit["cache"]["request_id"] == refreshed["request_id"] and submissions(fal_emulator) == 3


def test_an_embedding_is_cached_with_its_bytes(photo, tmp_path, fal_emulator):
    first = segment(photo, tmp_path / "cache", tmp_path / "out-1", operator=EmbedImageOperator)
    second = segment(photo, tmp_path / "cache", tmp_path / "out-2", operator=EmbedImageOperator)
    assert second["cache"]["hit"] is True and submissions(fal_emulator) == 1
    assert read(second["stored_url"]) == read(first["stored_url"])


@pytest.mark.parametrize(
    ("setting", "field"),
    [
        ({"cache_mode": "sometimes"}, "cache_mode"),
        ({"cache_max_age": float("nan")}, "cache_max_age"),
        ({"cache_salt": ["a"]}, "cache_salt"),
    ],
)
def test_bad_cache_settings_fail_the_task_before_anything_is_sent(setting, field, photo, tmp_path, fal_emulator):
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match=field):
        segment(photo, tmp_path / "cache", tmp_path / "out", **setting)
    assert submissions(fal_emulator) == 0


@dag(dag_id="sam3_cache_deferrable", schedule=None, params={"image": "", "out": "", "cache": ""})
def cached_deferrable():
    SegmentImageOperator(
        task_id="seg",
        image="{{ params.image }}",
        prompt="square",
        deferrable=True,
        poll_interval=0.2,
        output_path="{{ params.out }}",
        result_cache="{{ params.cache }}",
    )


CACHED_DEFERRABLE = cached_deferrable()


def test_a_deferred_task_keeps_its_result_and_the_next_run_hits(photo, tmp_path, run_dag, fal_emulator):
    cache = str(tmp_path / "cache")
    first = run_dag(CACHED_DEFERRABLE, image=str(photo), out=str(tmp_path / "o1"), cache=cache)["seg"]
    second = run_dag(CACHED_DEFERRABLE, image=str(photo), out=str(tmp_path / "o2"), cache=cache)["seg"]
    assert first[0] == second[0] == "success"
    assert first[1]["cache"]["hit"] is False and second[1]["cache"]["hit"] is True
    assert second[1]["cache"]["request_id"] == first[1]["request_id"] and submissions(fal_emulator) == 1


def test_the_connection_s_result_cache_serves_operators_that_set_none(photo, tmp_path, fal_emulator, monkeypatch):
    import json

    connection = {
        "conn_type": "fal",
        "password": fal_emulator.api_key,
        "host": fal_emulator.host,
        "extra": {"result_cache": str(tmp_path / "shared-cache")},
    }
    monkeypatch.setenv("AIRFLOW_CONN_FAL_DEFAULT", json.dumps(connection))

    def run(out):
        task = SegmentImageOperator(
            task_id="seg", image=str(photo), prompt="square", deferrable=False, poll_interval=0.2, output_path=str(out)
        )
        return task.execute({"task_state_store": PlainStore(), "dag_run": SimpleNamespace(clear_number=0)})

    assert run(tmp_path / "o1")["cache"]["hit"] is False
    assert run(tmp_path / "o2")["cache"]["hit"] is True and submissions(fal_emulator) == 1
    assert (tmp_path / "shared-cache" / "v1").is_dir()


def test_a_hit_on_a_large_photo_uploads_nothing(tmp_path, fal_emulator, monkeypatch):
    import os

    import fal_client.client
    from PIL import Image

    monkeypatch.setattr(fal_client.client, "REST_URL", fal_emulator.base_url)
    monkeypatch.setattr(fal_client.client, "CDN_URL", fal_emulator.base_url)
    large = tmp_path / "large.png"
    Image.frombytes("RGB", (1400, 1200), os.urandom(1400 * 1200 * 3)).save(large)
    assert large.stat().st_size > 4 * 1024 * 1024  # above the inline limit: sent through fal's storage
    assert segment(large, tmp_path / "cache", tmp_path / "o1")["cache"]["hit"] is False
    assert fal_emulator.counters()["uploads"]["total"] == 1
    assert segment(large, tmp_path / "cache", tmp_path / "o2")["cache"]["hit"] is True
    assert fal_emulator.counters()["uploads"]["total"] == 1 and submissions(fal_emulator) == 1


@pytest.mark.parametrize(
    "edit",
    [
        ("request_id", "../../../escaped"),  # a folder outside output_path
        ("output", {"masks": "not a list"}),  # not the endpoint's output
        ("output", {"masks": [{"url": "https://169.254.169.254/latest/meta-data", "content_type": "image/png"}]}),
    ],
    ids=["escaping-request-id", "malformed-output", "url-with-no-cached-file"],
)
def test_a_hostile_entry_is_a_miss_and_writes_nothing_outside_output_path(edit, photo, tmp_path, fal_emulator):
    import json

    cache = tmp_path / "cache"
    segment(photo, cache, tmp_path / "o1")
    entry_json = next((cache / "v1").glob("*/*/entry.json"))
    record = json.loads(entry_json.read_text())
    field, value = edit
    if field == "request_id":
        record["payload"]["reference"]["request_id"] = value
    else:
        record["payload"]["output"] = value
    entry_json.write_text(json.dumps(record))
    before = {path for path in tmp_path.rglob("*")}
    again = segment(photo, cache, tmp_path / "out" / "o2")
    assert again["cache"]["hit"] is False and submissions(fal_emulator) == 2  # sent again, kept again
    written = {path for path in tmp_path.rglob("*")} - before
    assert all(str(path).startswith((str(tmp_path / "out"), str(cache))) for path in written), written


def test_two_tasks_missing_the_same_request_at_once_pay_once(photo, tmp_path, fal_emulator):
    """The first task claims the key and pays; the other waits for its entry and is answered from it."""
    import threading

    fal_emulator.configure(service_time_s=1.0)
    documents: dict[str, dict] = {}

    def one(name: str) -> None:
        ti = SimpleNamespace(
            dag_id="cache_dag", run_id=f"run_{name}", task_id="seg", map_index=-1, xcom_push=lambda **_: None
        )
        task = SegmentImageOperator(
            task_id="seg",
            image=str(photo),
            prompt="square",
            deferrable=False,
            poll_interval=0.2,
            output_path=str(tmp_path / name),
            result_cache=str(tmp_path / "cache"),
        )
        context = {"task_state_store": PlainStore(), "dag_run": SimpleNamespace(clear_number=0), "ti": ti}
        documents[name] = task.execute(context)

    threads = [threading.Thread(target=one, args=(name,)) for name in ("left", "right")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert submissions(fal_emulator) == 1 == fal_emulator.counters()["billed"]
    assert sorted(document["cache"]["hit"] for document in documents.values()) == [False, True]
    assert documents["left"]["request_id"] == documents["right"]["request_id"]
    assert not list((tmp_path / "cache").rglob("claim.json"))  # released once the result was kept


def test_a_task_that_fails_after_claiming_drops_its_claim_so_nobody_waits_for_it(photo, tmp_path, fal_emulator):
    fal_emulator.add_fault("app_500", target="submit", first=1)  # the request fails at fal: nothing is kept
    with pytest.raises(Exception, match="the model app failed"):
        segment(photo, tmp_path / "cache", tmp_path / "out-1")
    assert not list((tmp_path / "cache").rglob("claim.json")) and not list((tmp_path / "cache").rglob("entry.json"))
    assert segment(photo, tmp_path / "cache", tmp_path / "out-2")["cache"]["hit"] is False  # paid at once
    assert fal_emulator.counters()["billed"] == 1


def test_a_hit_without_output_path_names_the_cache_s_own_copies_not_fal_s_urls(photo, tmp_path, fal_emulator):
    """fal's URLs of the request that paid may have expired: the hit's files are the cache's checked copies."""
    from airflow_provider_sam3.models.results import SegmentationResult

    first = segment(photo, tmp_path / "cache", tmp_path / "out")
    second = segment(photo, tmp_path / "cache", None)
    assert second["cache"]["hit"] is True and submissions(fal_emulator) == 1
    cache_uri = (tmp_path / "cache").as_uri()
    assert second["output_location"].startswith(cache_uri)
    assert all(mask["stored_url"].startswith(cache_uri) for mask in second["masks"]) and second["masks"]
    document = SegmentationResult.model_validate(second)
    copies = [document.read_stored(mask.stored_url, "masks") for mask in document.masks]
    assert copies == [read(mask["stored_url"]) for mask in first["masks"]]
