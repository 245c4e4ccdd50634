"""The result cache on the batch operator, against the emulator over TLS with the real hook: a second run over the
same photos sends nothing and bills nothing, with the same manifest apart from the cache and accounting columns;
a changed prompt misses everywhere and one changed image misses once; identical requests within a batch are sent
once; two batches sharing the cache at the same moment pay once per key; a damaged entry is refilled with one billed
request."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from airflow.sdk import dag
from engine_runs import PlainStore
from manifests import read_manifest

from airflow_provider_sam3.exceptions import InputValidationError
from airflow_provider_sam3.operators.batch import Sam3BatchOperator


@dag(dag_id="sam3_batch_waits_for_claims", schedule=None, params={"images": "", "out": "", "cache": ""})
def waits_for_claims():
    Sam3BatchOperator(
        task_id="segment",
        images="{{ params.images }}",
        output_path="{{ params.out }}",
        arguments={"prompt": "box", "include_scores": True, "include_boxes": True},
        result_cache="{{ params.cache }}",
        deferrable=True,
        poll_interval=0.2,
    )


waits_dag = waits_for_claims()

ACCOUNTING = frozenset({"cache", "submissions", "cost_usd"})
"""Columns that differ by design between a paying run and a run the cache answers."""


def run_batch(images, cache, out, *, prompt="box", task_id="segment", **kwargs) -> dict:
    """One batch task instance of its own run (a fresh task state store): nothing but the cache is shared."""
    task = Sam3BatchOperator(
        task_id=task_id,
        images=[str(p) for p in images] if isinstance(images, list) else str(images),
        output_path=str(out),
        arguments={"prompt": prompt, "include_scores": True, "include_boxes": True},
        result_cache=str(cache),
        deferrable=False,
        poll_interval=0.2,
        on_image_failure="report",
        **kwargs,
    )
    return task.execute({"task_state_store": PlainStore(), "dag_run": SimpleNamespace(clear_number=0)})


def counters(fal_emulator) -> tuple[int, int]:
    numbers = fal_emulator.counters()
    return numbers["submissions"]["total"], numbers["billed"]


def comparable(row: dict, out: Path) -> dict:
    """A manifest row without its accounting columns, its locations relative to its own run's folder."""
    text = repr({k: v for k, v in row.items() if k not in ACCOUNTING})
    return eval(text.replace(f"file://{out}", "<out>").replace(str(out), "<out>"))  # noqa: S307 - our own repr


def mask_bytes(row: dict) -> list[bytes]:
    return [Path(mask["location"].removeprefix("file://")).read_bytes() for mask in row["masks"]]


def test_a_second_run_sends_nothing_bills_nothing_and_writes_the_same_manifest(photos, tmp_path, fal_emulator):
    images = photos(6)
    first = run_batch(images, tmp_path / "cache", tmp_path / "out-1")
    assert counters(fal_emulator) == (6, 6) and first["cache_hits"] == 0 and first["succeeded"] == 6
    second = run_batch(images, tmp_path / "cache", tmp_path / "out-2")
    assert counters(fal_emulator) == (6, 6)  # nothing sent, nothing billed
    assert second["succeeded"] == 6 and second["submissions"] == 0 and second["billed_requests"] == 0
    assert second["cost_usd"] == 0 and second["cache_hits"] == 6
    assert second["cache_saved_usd"] == pytest.approx(first["cost_usd"])
    rows_1, rows_2 = read_manifest(first["manifest"]), read_manifest(second["manifest"])
    for row_1, row_2 in zip(rows_1, rows_2, strict=True):
        assert comparable(row_2, tmp_path / "out-2") == comparable(row_1, tmp_path / "out-1")
        assert row_1["cache"] == {"key": row_1["cache"]["key"], "hit": False, "request_id": None, "saved_usd": None}
        assert row_2["cache"]["hit"] is True and row_2["cache"]["key"] == row_1["cache"]["key"]
        assert row_2["request_id"] == row_1["request_id"] == row_2["cache"]["request_id"]
        assert row_2["submissions"] == 0 and row_2["cost_usd"] == 0.0 and row_1["submissions"] == 1
        assert mask_bytes(row_2) == mask_bytes(row_1) and row_2["masks"]
        assert str(tmp_path / "out-2") in row_2["output_location"]  # copied into this run's own folder


def test_a_changed_prompt_misses_everywhere_and_one_changed_image_misses_once(photos, tmp_path, fal_emulator):
    from PIL import Image

    images = photos(5)
    cache = tmp_path / "cache"
    run_batch(images, cache, tmp_path / "out-1")
    assert run_batch(images, cache, tmp_path / "out-2", prompt="square")["cache_hits"] == 0
    assert counters(fal_emulator) == (10, 10)
    picture = Image.open(images[2]).convert("RGB")
    picture.putpixel((0, 0), (255, 0, 0))
    picture.save(images[2])
    third = run_batch(images, cache, tmp_path / "out-3")
    assert third["cache_hits"] == 4 and third["submissions"] == 1 and counters(fal_emulator) == (11, 11)
    rows = read_manifest(third["manifest"])
    assert [row["cache"]["hit"] for row in rows] == [True, True, False, True, True]


def test_identical_requests_within_one_batch_are_sent_once(photos, tmp_path, fal_emulator):
    (photo,) = photos(1)
    copies = []
    for name in ("a.png", "b.png", "c.png"):
        copies.append(tmp_path / "copies" / name)
        copies[-1].parent.mkdir(exist_ok=True)
        shutil.copy(photo, copies[-1])
    summary = run_batch([photo, *copies], tmp_path / "cache", tmp_path / "out", submit_concurrency=4)
    assert counters(fal_emulator) == (1, 1)
    assert summary["succeeded"] == 4 and summary["cache_hits"] == 3 and summary["submissions"] == 1
    rows = read_manifest(summary["manifest"])
    assert len({row["request_id"] for row in rows}) == 1 and all(row["masks"] for row in rows)
    assert sorted(row["cache"]["hit"] for row in rows) == [False, True, True, True]
    import json

    stored = json.loads((Path(rows[0]["output_location"].removeprefix("file://")) / "result.json").read_text())
    (paid,) = [row for row in rows if not row["cache"]["hit"]]
    assert stored["image"]["source"] == paid["source"]  # the paying image's document: the others kept it


def test_two_batches_sharing_the_cache_at_once_pay_once_per_request(photos, tmp_path, fal_emulator):
    fal_emulator.configure(service_time_s=1.0)  # both batches reach the same keys while the first still pays
    images = photos(4)
    summaries: dict[str, dict] = {}

    def one(name: str) -> None:
        summaries[name] = run_batch(images, tmp_path / "cache", tmp_path / name, task_id=name)

    threads = [threading.Thread(target=one, args=(name,)) for name in ("left", "right")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counters(fal_emulator) == (4, 4)
    assert summaries["left"]["succeeded"] == summaries["right"]["succeeded"] == 4
    assert summaries["left"]["cache_hits"] + summaries["right"]["cache_hits"] == 4
    left, right = read_manifest(summaries["left"]["manifest"]), read_manifest(summaries["right"]["manifest"])
    assert [row["request_id"] for row in left] == [row["request_id"] for row in right]


def test_damaged_entries_are_refilled_with_one_billed_request_each(photos, tmp_path, fal_emulator):
    images = photos(3)
    cache = tmp_path / "cache"
    run_batch(images, cache, tmp_path / "out-1")
    entries = sorted(cache.rglob("entry.json"))
    assert len(entries) == 3
    entries[0].write_bytes(entries[0].read_bytes()[:-40])  # a half-written or truncated entry
    edited = entries[1].read_text().replace('"request_id": "', '"request_id": "../', 1)  # an edited one
    entries[1].write_text(edited)
    second = run_batch(images, cache, tmp_path / "out-2")
    assert second["cache_hits"] == 1 and counters(fal_emulator) == (5, 5)
    third = run_batch(images, cache, tmp_path / "out-3")
    assert third["cache_hits"] == 3 and counters(fal_emulator) == (5, 5)  # the refilled entries are sound again


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ({"cache_mode": "sometimes"}, "cache_mode"),
        ({"cache_urls": "yes"}, "cache_urls"),
        ({"cache_max_age": float("nan")}, "cache_max_age"),
        ({"cache_salt": 7}, "cache_salt"),
    ],
)
def test_bad_cache_settings_fail_before_anything_is_sent(setting, named, photos, tmp_path, fal_emulator):
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises((InputValidationError, AirflowFailException)) as raised:
        run_batch(photos(2), tmp_path / "cache", tmp_path / "out", **setting)
    assert named in str(raised.value)
    assert counters(fal_emulator) == (0, 0)


def test_the_cost_ceiling_counts_only_the_images_the_cache_does_not_answer(photos, tmp_path, fal_emulator):
    from airflow.sdk.exceptions import AirflowFailException

    images = photos(6)
    cache = tmp_path / "cache"
    run_batch(images[:4], cache, tmp_path / "out-1")
    # Six images at $0.005 are above a $0.015 ceiling; the four the cache answers leave two to pay: $0.01.
    summary = run_batch(images, cache, tmp_path / "out-2", max_cost_usd=0.015)
    assert summary["cache_hits"] == 4 and summary["succeeded"] == 6 and counters(fal_emulator) == (6, 6)
    with pytest.raises((InputValidationError, AirflowFailException)) as raised:
        run_batch(images, tmp_path / "empty-cache", tmp_path / "out-3", max_cost_usd=0.015)
    assert "max_cost_usd" in str(raised.value) and counters(fal_emulator) == (6, 6)  # refused before sending


def claim_every_key(images, cache, *, lease: float) -> list[str]:
    """Claim the keys of these images' requests (as the batch keys them) for another task, for ``lease`` seconds."""
    import asyncio

    from airflow_provider_sam3.batch.cache import BatchCache, CacheSettings
    from airflow_provider_sam3.batch.inputs import InputLimits, read_image
    from airflow_provider_sam3.batch.listing import BatchImage
    from airflow_provider_sam3.endpoints import endpoint_for
    from airflow_provider_sam3.operators.batch_start import BATCH_DEFAULTS
    from airflow_provider_sam3.storage.result_cache import ResultCache

    endpoint = endpoint_for("image", "3")
    shared = {**BATCH_DEFAULTS, "prompt": "box", "include_scores": True, "include_boxes": True}
    keyer = BatchCache(CacheSettings(str(cache)), endpoint, SimpleNamespace(entries={}), None, None)
    keys = []
    for path in images:
        image = BatchImage(str(path))
        keys.append(keyer.key_of(image, shared, asyncio.run(read_image(image, "images[0]", InputLimits()))))
    for key in keys:
        assert ResultCache(str(cache)).claim(key, "another-task#0", lease=lease) is None
    return keys


def test_an_image_another_task_is_paying_for_waits_and_pays_itself_only_when_that_claim_lapses(
    photos, tmp_path, fal_emulator
):
    images = photos(2)
    cache = tmp_path / "cache"
    claim_every_key(images[:1], cache, lease=2.0)
    summary = run_batch(images, cache, tmp_path / "out")
    assert summary["succeeded"] == 2 and counters(fal_emulator) == (2, 2)  # the claim lapsed unkept: it paid once


def test_a_deferred_batch_waits_off_the_worker_for_keys_other_tasks_are_paying_for(
    photos, tmp_path, fal_emulator, run_batch_dag, monkeypatch, capfd
):
    from airflow_provider_sam3.operators import batch as batch_module

    monkeypatch.setattr(batch_module, "CLAIM_WAIT_SECONDS", 1)
    images = photos(3)
    cache = tmp_path / "cache"
    run_batch(images[1:], cache, tmp_path / "first")  # two are in the cache; the third is another task's now
    claim_every_key(images[:1], cache, lease=12.0)  # longer than Airflow takes to start the task
    folder = tmp_path / "listed"
    folder.mkdir()
    for path in images:
        shutil.copy(path, folder / path.name)
    state, results = run_batch_dag(waits_dag, images=str(folder), out=str(tmp_path / "out"), cache=str(cache))
    assert state == "success", results
    summary = results["segment"][1]
    assert summary["succeeded"] == 3 and summary["cache_hits"] == 2 and counters(fal_emulator) == (3, 3)
    output = capfd.readouterr().out
    assert "waits: another task (another-task) is paying for the same request" in output
    assert "Waiting 1 s off the worker for results other tasks are paying for" in output


def test_an_entry_holding_another_endpoint_s_result_under_the_key_is_a_miss(photos, tmp_path, fal_emulator):
    """A planted entry (the right key, another endpoint's result) never becomes this batch's document."""
    import json

    images = photos(2)
    cache = tmp_path / "cache"
    run_batch(images, cache, tmp_path / "out-1")
    for entry in cache.rglob("entry.json"):
        record = json.loads(entry.read_text())
        entry.write_text(json.dumps({**record, "endpoint_id": "fal-ai/sam-3-1/image"}))
    second = run_batch(images, cache, tmp_path / "out-2")
    assert second["cache_hits"] == 0 and second["succeeded"] == 2 and counters(fal_emulator) == (4, 4)
    assert all(json.loads(e.read_text())["endpoint_id"] == "fal-ai/sam-3/image" for e in cache.rglob("entry.json"))


def test_an_image_that_failed_leaves_no_claim_for_other_tasks_to_wait_on(photos, tmp_path, fal_emulator):
    fal_emulator.add_fault("app_500", target="submit", first=1)
    summary = run_batch(photos(2), tmp_path / "cache", tmp_path / "out", max_resubmits=0)
    assert summary["failed"] == 1 and summary["succeeded"] == 1
    assert not list((tmp_path / "cache").rglob("claim.json"))
    assert len(list((tmp_path / "cache").rglob("entry.json"))) == 1
