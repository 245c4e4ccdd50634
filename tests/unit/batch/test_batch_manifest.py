"""The streamed manifest: input order from parts written in completion order, duplicates taken once, bounded
memory, and shards merged into one."""

from __future__ import annotations

import json
import random
import tracemalloc

from airflow_provider_sam3.batch import manifest as manifest_module
from airflow_provider_sam3.batch.manifest import merge_manifests, write_manifest, write_part
from airflow_provider_sam3.models.batch import BatchEntry


def entries(count, done=True):
    out = []
    for index in range(count):
        entry = BatchEntry(index=index, source=f"/in/{index}.png", request_id=f"req-{index}", submissions=1)
        entry.state = "done" if done else "pending"
        out.append(entry)
    return out


def row(index, request_id=None, payload=""):
    return {
        "index": index,
        "request_id": request_id or f"req-{index}",
        "status": "succeeded",
        "submissions": 1,
        "blob": payload,
    }


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rows_come_out_in_input_order_from_parts_in_any_order(tmp_path, monkeypatch):
    monkeypatch.setattr(manifest_module, "MERGE_FAN_IN", 3)  # forces two rounds of compaction with 10 parts
    order = list(range(50))
    random.Random(3).shuffle(order)
    for cycle in range(10):
        write_part(tmp_path, cycle, [row(i) for i in order[cycle * 5 : cycle * 5 + 5]])
    write_part(tmp_path, 99, [row(7), row(8, request_id="an-older-request")])  # a crash left duplicates behind
    batch = entries(50)
    batch[8].request_id = "req-8"
    path = write_manifest(tmp_path, batch)
    rows = lines(path)
    assert [r["index"] for r in rows] == list(range(50))
    assert rows[8]["request_id"] == "req-8" and all(r["status"] == "succeeded" for r in rows)
    assert not (tmp_path / "_manifest").exists()


def test_a_row_lost_from_storage_is_listed_not_hidden(tmp_path):
    write_part(tmp_path, 0, [row(0), row(2)])
    rows = lines(write_manifest(tmp_path, entries(3)))
    assert [r["status"] for r in rows] == ["succeeded", "failed", "succeeded"]
    assert rows[1]["error_class"] == "ManifestRowMissing"


def test_repeats_carry_the_row_they_repeat(tmp_path):
    batch = entries(3)
    batch[2].state, batch[2].repeat_of, batch[2].request_id = "repeat", 0, None
    write_part(tmp_path, 0, [row(0, payload="mask"), row(1)])
    rows = lines(write_manifest(tmp_path, batch))
    assert rows[2]["request_id"] == "req-0" and rows[2]["blob"] == "mask" and rows[2]["repeat_of"] == 0


def test_memory_does_not_grow_with_the_manifest(tmp_path):
    """20,000 rows of 2 KB (40 MB of manifest) are written holding a few rows at a time."""
    payload = "x" * 2000
    batch = entries(20_000)
    for start in range(0, 20_000, 500):
        write_part(tmp_path, start, [row(i, payload=payload) for i in range(start, start + 500)])
    tracemalloc.start()
    try:
        path = write_manifest(tmp_path, batch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert path.stat().st_size > 40_000_000
    assert peak < 8_000_000, f"peak {peak:,} bytes while writing a {path.stat().st_size:,}-byte manifest"


def test_shard_manifests_merge_in_shard_order(tmp_path):
    manifests = []
    for shard in range(3):
        folder = tmp_path / f"shard{shard}"
        folder.mkdir()
        batch = entries(4)
        batch[3].state, batch[3].error = "failed", "runner failed"
        write_part(folder, 0, [row(i) for i in range(3)])
        manifests.append(write_manifest(folder, batch))
    counts = merge_manifests(manifests, tmp_path / "merged.jsonl")
    rows = lines(tmp_path / "merged.jsonl")
    assert [(r["shard"], r["shard_index"]) for r in rows] == [(s, i) for s in range(3) for i in range(4)]
    assert [r["index"] for r in rows] == list(range(12))
    assert counts["images"] == 12 and counts["succeeded"] == 9 and counts["failed"] == 3
    assert counts["submissions"] == 12
