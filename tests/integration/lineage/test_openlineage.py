"""OpenLineage events and asset events from SAM 3 tasks: the real OpenLineage provider and its file transport,
each DAG run with dag.test() in a process of its own (the provider reads its transport once per process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

HERE = Path(__file__).parent
pytest.importorskip("airflow.providers.openlineage", reason="the lineage extra (pip install '.[lineage]')")


def photos(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        image = Image.new("RGB", (96, 72), (20, 20, 20))
        ImageDraw.Draw(image).rectangle((20 + index, 15, 70, 55), fill=(240, 200, 40))
        path = folder / f"photo_{index}.png"
        image.save(path)
        paths.append(path)
    return paths


def run_with_openlineage(tmp_path: Path, dag_id: str, conf: dict) -> tuple[dict, list[dict], list[dict]]:
    """(task states, OpenLineage events, asset events) of one dag.test() run with the file transport."""
    events_file = tmp_path / f"{dag_id}.openlineage.jsonl"
    env = {
        **os.environ,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "sam3-tests",
    }
    done = subprocess.run(
        [sys.executable, str(HERE / "openlineage_run.py"), dag_id, json.dumps(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = done.stdout.splitlines()
    states = next((json.loads(line[7:]) for line in lines if line.startswith("STATES ")), None)
    assert states is not None, done.stdout[-3000:] + done.stderr[-5000:]
    (tmp_path / f"{dag_id}.log").write_text(done.stdout + done.stderr)  # what the run logged, to read on failure
    assets = next(json.loads(line[13:]) for line in lines if line.startswith("ASSET_EVENTS "))
    events = [json.loads(line) for line in events_file.read_text().splitlines()] if events_file.exists() else []
    return states, events, assets


def task_events(events: list[dict], task_id: str) -> list[dict]:
    return [e for e in events if e["job"]["name"].endswith(f".{task_id}")]


def datasets(event: dict, side: str) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in event.get(side, [])]


def last_of(events: list[dict], task_id: str, kind: str) -> dict:
    found = [e for e in task_events(events, task_id) if e["eventType"] == kind]
    assert found, [(e["job"]["name"], e["eventType"]) for e in events]
    return found[-1]


def test_a_deferred_single_image_task_reports_its_image_its_stored_result_and_its_request(
    airflow_db, fal_emulator, tmp_path
):
    [image] = photos(tmp_path / "in", 1)
    out = tmp_path / "out"
    states, events, _ = run_with_openlineage(tmp_path, "lineage_single", {"image": str(image), "output_path": str(out)})
    assert states == {"segment[-1]": "success"}
    assert [e["eventType"] for e in task_events(events, "segment")][0] == "START"
    complete = last_of(events, "segment", "COMPLETE")
    assert datasets(complete, "inputs") == [("file", str(image))]
    [(namespace, name)] = datasets(complete, "outputs")
    assert namespace == "file" and name.startswith(str(out)) and Path(name).is_dir()
    facet = complete["run"]["facets"]["sam3"]
    assert facet["endpoint_id"] == "fal-ai/sam-3/image" and facet["model_version"] == "3"
    assert facet["cost_usd"] == 0.005
    assert facet["request_id"] in [record["request_id"] for record in fal_emulator.requests()]


def test_a_deferred_batch_names_its_folder_and_manifest_never_one_dataset_per_image(airflow_db, fal_emulator, tmp_path):
    images = photos(tmp_path / "in", 4)
    out = tmp_path / "out"
    conf = {"images": str(tmp_path / "in"), "output_path": str(out)}
    states, events, assets = run_with_openlineage(tmp_path, "lineage_batch", conf)
    assert states == {"segment[-1]": "success"}
    complete = last_of(events, "segment", "COMPLETE")
    assert datasets(complete, "inputs") == [("file", str(tmp_path / "in"))]
    outputs = datasets(complete, "outputs")
    assert len(outputs) == 2 and all(namespace == "file" for namespace, _ in outputs)
    folder, manifest = (name for _, name in outputs)
    assert manifest == f"{folder}/manifest.jsonl" and Path(manifest).is_file()
    every_name = [name for event in events for side in ("inputs", "outputs") for _, name in datasets(event, side)]
    assert not any(name.endswith(".png") or name in map(str, images) for name in every_name)  # no per-file dataset
    facet = complete["run"]["facets"]["sam3"]
    assert (facet["images"], facet["succeeded"], facet["failed"], facet["invalid"]) == (4, 4, 0, 0)
    assert facet["billed_requests"] == 4 and facet["cost_usd"] == pytest.approx(0.02)
    assert facet["manifest"] == f"file://{manifest}"
    [asset_event] = assets  # the outlet's asset event carries where the results are, the counts and the cost
    assert asset_event["task"] == "segment"
    assert asset_event["extra"]["manifest"] == f"file://{manifest}"
    assert (asset_event["extra"]["images"], asset_event["extra"]["succeeded"]) == (4, 4)
    assert asset_event["extra"]["cost_usd"] == pytest.approx(0.02)


def test_a_failed_batch_reports_what_it_knew_in_its_fail_event(airflow_db, fal_emulator, tmp_path):
    photos(tmp_path / "in", 2)
    (tmp_path / "in" / "photo_9.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"cut off")  # a broken file
    out = tmp_path / "out"
    conf = {"images": str(tmp_path / "in"), "output_path": str(out)}
    states, events, assets = run_with_openlineage(tmp_path, "lineage_failing_batch", conf)
    assert states == {"segment[-1]": "failed"}
    fail = last_of(events, "segment", "FAIL")
    assert datasets(fail, "inputs") == [("file", str(tmp_path / "in"))]
    facet = fail["run"]["facets"]["sam3"]
    assert facet["images"] == 3 and facet["succeeded"] == 2 and facet["failed"] + facet["invalid"] == 1
    assert [name for _, name in datasets(fail, "outputs")][-1].endswith("manifest.jsonl")
    assert assets == []  # a failed task emits no asset event


def test_the_merge_reads_the_shard_manifests_and_writes_one(airflow_db, fal_emulator, tmp_path):
    photos(tmp_path / "in", 4)
    out = tmp_path / "out"
    states, events, _ = run_with_openlineage(
        tmp_path, "lineage_shards", {"images": str(tmp_path / "in"), "output_path": str(out)}
    )
    assert states == {"segment[0]": "success", "segment[1]": "success", "merge[-1]": "success"}
    complete = last_of(events, "merge", "COMPLETE")
    inputs = datasets(complete, "inputs")
    assert len(inputs) == 2 and all(name.endswith("/manifest.jsonl") for _, name in inputs)
    [(_, merged)] = datasets(complete, "outputs")
    assert merged.endswith("/merge/manifest.jsonl") and Path(merged).is_file()
    facet = complete["run"]["facets"]["sam3"]
    assert (facet["images"], facet["succeeded"], facet["shards"]) == (4, 4, 2)
