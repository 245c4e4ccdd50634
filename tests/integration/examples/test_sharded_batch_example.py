"""dags_examples/sam3_sharded_batch.py under dag.test(): one folder in four shards, each image in exactly one,
one merged manifest, each image paid once."""

from __future__ import annotations

import json
from pathlib import Path

from example_runs import load_example, mapped, single


def local(location: str) -> Path:
    return Path(location.removeprefix("file://"))


def test_four_shards_cover_the_folder_once_and_merge_into_one_manifest(
    run_example, sample_images, fal_emulator, tmp_path
):
    example = load_example("sam3_sharded_batch")
    images = sample_images(12)
    out = tmp_path / "out"
    dag_run, results = run_example(
        example.sam3_sharded_batch(), input_folder=str(images[0].parent), output_path=str(out), prompt="product"
    )
    assert dag_run.state == "success", results

    summaries = mapped(results, "segment")
    assert len(summaries) == 4
    shard_sources = [
        [json.loads(line)["source"] for line in local(s["manifest"]).read_text().splitlines()] for s in summaries
    ]
    assert sorted(sum(shard_sources, [])) == sorted(str(p) for p in images)  # every image in exactly one shard

    merged = single(results, "merge")
    assert (merged["shards"], merged["images"], merged["succeeded"]) == (4, 12, 12)
    rows = [json.loads(line) for line in local(merged["manifest"]).read_text().splitlines()]
    assert [row["source"] for row in rows] == sum(shard_sources, [])  # shard after shard, each in input order
    assert [(row["shard"], row["shard_index"]) for row in rows] == [
        (shard, index) for shard, sources in enumerate(shard_sources) for index in range(len(sources))
    ]
    assert local(merged["manifest"]).parent.name == "merge"
    assert fal_emulator.counters()["submissions"]["total"] == 12 == merged["submissions"]

    # The merged manifest reads like one batch's: every row's document lies in its shard's folder of this run.
    from airflow_provider_sam3.storage.batch_results import BatchResults

    batch = BatchResults.from_xcom(merged)
    documents = list(batch.documents())
    assert [row.source for row, _ in documents] == [row["source"] for row in rows]
    assert all(document.request_id == row.request_id for row, document in documents)
    assert len(list(batch.to_rows("product"))) == sum(len(document.masks) for _, document in documents)
