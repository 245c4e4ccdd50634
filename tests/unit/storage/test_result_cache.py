"""The result cache's entries (``storage.result_cache.ResultCache``): written once, checked when read, a damaged or
partial entry a miss that the next write replaces, and claims that let one task of several pay for a key."""

from __future__ import annotations

import json
import logging
import os

import pytest

from airflow_provider_sam3.exceptions import InputValidationError
from airflow_provider_sam3.storage.result_cache import ResultCache

KEY = "ab" + "0" * 62
OTHER = "cd" + "1" * 62
PAYLOAD = {"output": {"masks": [{"url": "https://v3.fal.media/files/m0.png"}]}}
FILES = {"mask_000.png": b"\x89PNG mask bytes", "result.json": b'{"masks": 1}'}


def filled(tmp_path, **kwargs) -> ResultCache:
    cache = ResultCache(tmp_path / "cache", **kwargs)
    cache.put(
        KEY,
        endpoint_id="fal-ai/sam-3/image",
        request_id="req-1",
        payload=PAYLOAD,
        files=FILES,
        cost_usd=0.005,
        sources={"https://v3.fal.media/files/m0.png": "mask_000.png"},
    )
    return cache


def test_an_entry_reads_back_with_its_document_files_and_the_request_that_paid(tmp_path):
    cache = filled(tmp_path)
    hit = cache.get(KEY)
    assert hit is not None and hit.payload == PAYLOAD and hit.request_id == "req-1" and hit.cost_usd == 0.005
    assert {name: path.read_bytes() for name, path in hit.files.items()} == FILES
    assert hit.read("https://v3.fal.media/files/m0.png") == FILES["mask_000.png"]
    with pytest.raises(ValueError, match="holds no file"):
        hit.read("https://v3.fal.media/files/other.png")
    assert cache.get(OTHER) is None
    assert not [p for p in (tmp_path / "cache").rglob("*.tmp")]  # nothing half-written left behind


def test_a_task_that_paid_replaces_the_entry_it_could_not_use_and_earlier_readers_keep_their_files(tmp_path):
    cache = filled(tmp_path)
    before = cache.get(KEY)
    again = cache.put(KEY, endpoint_id="fal-ai/sam-3/image", request_id="req-2", payload={}, files={}, cost_usd=0.005)
    assert again is not None and again.request_id == "req-2" and cache.get(KEY).request_id == "req-2"
    assert before.read("https://v3.fal.media/files/m0.png") == FILES["mask_000.png"]  # its writer's folder stays
    assert (
        ResultCache(tmp_path / "cache", mode="read").put(
            KEY, endpoint_id="e", request_id="req-x", payload={}, files={}, cost_usd=None
        )
        is None
        and cache.get(KEY).request_id == "req-2"
    )
    refreshed = ResultCache(tmp_path / "cache", mode="refresh").put(
        KEY, endpoint_id="fal-ai/sam-3/image", request_id="req-3", payload={}, files={}, cost_usd=0.005
    )
    assert refreshed is not None and refreshed.request_id == "req-3"


def damage_truncated_file(folder):
    path = next(p for p in folder.iterdir() if p.is_dir()) / "mask_000.png"
    path.write_bytes(path.read_bytes()[:-3])


def damage_same_size_file(folder):
    path = next(p for p in folder.iterdir() if p.is_dir()) / "mask_000.png"
    path.write_bytes(b"X" * len(path.read_bytes()))


def damage_edited_json(folder):
    record = json.loads((folder / "entry.json").read_text())
    record["files"][0]["size"] += 1
    (folder / "entry.json").write_text(json.dumps(record))


def damage_half_json(folder):
    text = (folder / "entry.json").read_text()
    (folder / "entry.json").write_text(text[: len(text) // 2])


def damage_missing_file(folder):
    (next(p for p in folder.iterdir() if p.is_dir()) / "result.json").unlink()


def damage_escaping_name(folder):
    record = json.loads((folder / "entry.json").read_text())
    record["files"][0]["name"] = "../../../../etc/passwd"
    (folder / "entry.json").write_text(json.dumps(record))


def damage_symlink_out(folder):
    outside = folder.parent / "outside.png"
    outside.write_bytes(FILES["mask_000.png"])
    target = next(p for p in folder.iterdir() if p.is_dir()) / "mask_000.png"
    target.unlink()
    os.symlink(outside, target)


def damage_fifo(folder):
    target = next(p for p in folder.iterdir() if p.is_dir()) / "mask_000.png"
    target.unlink()
    os.mkfifo(target)


def damage_deep_json(folder):
    (folder / "entry.json").write_text("[" * 100_000 + "]" * 100_000)


def damage_source_naming_no_file(folder):
    record = json.loads((folder / "entry.json").read_text())
    record["sources"] = {"https://v3.fal.media/files/m0.png": "../../secret"}
    (folder / "entry.json").write_text(json.dumps(record))


def damage_nan_cost(folder):
    text = (folder / "entry.json").read_text().replace('"cost_usd": 0.005', '"cost_usd": NaN')
    (folder / "entry.json").write_text(text)


@pytest.mark.parametrize(
    "damage",
    [
        damage_truncated_file,
        damage_same_size_file,
        damage_edited_json,
        damage_half_json,
        damage_missing_file,
        damage_escaping_name,
        damage_symlink_out,
        damage_fifo,
        damage_deep_json,
        damage_nan_cost,
        damage_source_naming_no_file,
    ],
)
def test_a_damaged_entry_is_a_logged_miss_and_the_next_write_replaces_it(damage, tmp_path, caplog):
    cache = filled(tmp_path)
    damage(cache.folder(KEY))
    cache.log = logging.getLogger("cache-test")
    with caplog.at_level(logging.WARNING, logger="cache-test"):
        assert cache.get(KEY) is None
    assert f"result cache entry {KEY} is damaged" in caplog.text
    refilled = cache.put(
        KEY, endpoint_id="fal-ai/sam-3/image", request_id="req-2", payload=PAYLOAD, files=FILES, cost_usd=0.005
    )
    assert refilled is not None and refilled.request_id == "req-2" and cache.get(KEY).request_id == "req-2"


def test_an_entry_without_its_entry_json_is_not_there_yet(tmp_path):
    cache = filled(tmp_path)
    (cache.folder(KEY) / "entry.json").unlink()  # a writer that died after the files, before the entry
    assert cache.get(KEY) is None


def test_modes_and_max_age(tmp_path):
    filled(tmp_path)
    root = tmp_path / "cache"
    assert ResultCache(root, mode="read").get(KEY) is not None
    assert ResultCache(root, mode="write").get(KEY) is None
    assert ResultCache(root, mode="refresh").get(KEY) is None
    assert (
        ResultCache(root, mode="read").put(OTHER, endpoint_id="e", request_id="r", payload={}, files={}, cost_usd=None)
        is None
    )
    aged = ResultCache(root, max_age=60)
    created = aged.get(KEY).created_at
    assert aged.get(KEY, now=created + 59) is not None and aged.get(KEY, now=created + 61) is None


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("cache_mode", {"mode": "sometimes"}),
        ("cache_max_age", {"max_age": float("nan")}),
        ("cache_max_age", {"max_age": True}),
        ("cache_max_age", {"max_age": -1}),
    ],
)
def test_bad_settings_are_refused_naming_the_field(field, kwargs, tmp_path):
    with pytest.raises(InputValidationError, match=field):
        ResultCache(tmp_path, **kwargs)


def test_one_claim_at_a_time_until_it_is_released_or_expires(tmp_path):
    cache = ResultCache(tmp_path / "cache")
    assert cache.claim(KEY, "shard-1", lease=600, now=1000.0) is None
    assert cache.claim(KEY, "shard-2", lease=600, now=1001.0) == "shard-1"
    assert cache.claim(KEY, "shard-1", lease=600, now=1002.0) is None  # its own claim, renewed
    assert cache.claim(KEY, "shard-2", lease=600, now=1700.0) is None  # shard-1's lease ran out: taken over
    cache.release(KEY, "shard-1")  # not its claim any more: nothing happens
    assert cache.claim(KEY, "shard-3", lease=600, now=1701.0) == "shard-2"


def test_an_entry_too_old_to_use_is_replaced_by_the_next_write(tmp_path):
    cache = filled(tmp_path)
    created = cache.get(KEY).created_at
    aged = ResultCache(tmp_path / "cache", max_age=60)
    later = created + 3600
    assert aged.get(KEY, now=later) is None
    fresh = aged.put(KEY, endpoint_id="e", request_id="req-new", payload={}, files={}, cost_usd=None, now=later)
    assert fresh is not None and fresh.request_id == "req-new"


def test_two_writers_of_one_key_never_mix_their_files(tmp_path):
    first, second = ResultCache(tmp_path / "cache", mode="refresh"), ResultCache(tmp_path / "cache", mode="refresh")
    one = {"mask_000.png": b"one writer's mask"}
    other = {"mask_000.png": b"another writer's, longer mask"}
    first.put(KEY, endpoint_id="e", request_id="req-a", payload={}, files=one, cost_usd=None)
    second.put(KEY, endpoint_id="e", request_id="req-b", payload={}, files=other, cost_usd=None)
    hit = ResultCache(tmp_path / "cache").get(KEY)
    assert hit.request_id == "req-b" and hit.files["mask_000.png"].read_bytes() == other["mask_000.png"]


def test_a_file_changed_after_its_entry_was_checked_is_refused_when_copied(tmp_path):
    cache = filled(tmp_path)
    hit = cache.get(KEY)
    path = hit.files["mask_000.png"]
    path.write_bytes(b"Y" * len(FILES["mask_000.png"]))  # same size, other bytes, after the check
    with pytest.raises(ValueError, match="changed since its entry was checked"):
        hit.read("https://v3.fal.media/files/m0.png")


def test_an_entry_too_large_to_read_back_is_never_written(tmp_path, monkeypatch):
    from airflow_provider_sam3.storage import result_cache

    monkeypatch.setattr(result_cache, "MAX_ENTRY_BYTES", 2000)
    cache = ResultCache(tmp_path / "cache")
    with pytest.raises(ValueError, match="more than the 2,000 read back"):
        cache.put(KEY, endpoint_id="e", request_id="req-1", payload={"output": "x" * 5000}, files={}, cost_usd=None)
    assert not list((tmp_path / "cache").rglob("entry.json"))
