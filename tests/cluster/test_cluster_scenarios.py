"""The provider on a production-shaped Airflow: Postgres, Redis, CeleryExecutor, two triggerers and two workers.

Each scenario asserts with the emulator's counters and request list, the manifests, and where Airflow says each
try ran (``task_instance[_history].hostname``: every component names itself, see ``sam3_cluster_hostname``) or
which triggerer held a trigger (``trigger.triggerer_id`` -> ``job.hostname``). Nothing asserts a duration.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from batch_dags import assert_every_image_once, assert_only_the_finished_summary_is_kept, dag_source
from cluster import TRIGGERERS, WORKERS
from manifests import read_manifest
from photos import write_photos
from waiting import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

EXAMPLES = Path(__file__).resolve().parents[2] / "dags_examples"


def example_source(name: str) -> str:
    """An example DAG as shipped, under the test's own dag_id."""
    source = (EXAMPLES / f"{name}.py").read_text()
    marker = "@dag(\n    schedule=None,"
    assert marker in source, f"{name}: the @dag( header moved"
    return source.replace(marker, '@dag(\n    dag_id="{dag_id}",\n    schedule=None,')


def test_single_image_operators_and_submit_then_sensor_on_celery(whole_cluster, dag_writer, cluster_emulator, tmp_path):
    """20 mapped deferrable single-image tasks (``sam3_mapped_small_batch``) and the submit-then-sensor path
    (``sam3_submit_then_sensor``), both as shipped: each image submitted once, every result present, and both
    workers used. The last is arranged, not hoped for: each submit is held 2 s at the emulator, so a task keeps its
    worker slot that long; Airflow's Celery settings (``task_acks_late``, prefetch multiplier 1) let a worker
    reserve only as many messages as it has slots (2), and the run queues 8 at once (``max_active_tis_per_dagrun``),
    so the others can only be taken by the other worker while the first one's slots are held."""
    dep = whole_cluster
    photos = write_photos(tmp_path / "photos", 20, seed=51)
    cluster_emulator.configure(concurrency=8, service_time_s=0.5)
    cluster_emulator.add_fault("slow_response", target="submit", every=1, delay_s=2.0)
    mapped = dag_writer(example_source("sam3_mapped_small_batch"), suffix="mapped")
    sensor = dag_writer(example_source("sam3_submit_then_sensor"), suffix="sensor")
    mapped_run = dep.trigger(mapped, conf={"input_folder": str(photos[0].parent), "prompt": "box"})
    out = tmp_path / "sensor_out"
    sensor_run = dep.trigger(
        sensor, conf={"image": str(photos[0]), "prompt": "box", "output_path": f"file://{out}"}, watch=["wait"]
    )
    assert dep.wait_for_run(mapped, mapped_run, timeout=400) == "success", dep.task_instances(mapped, mapped_run)
    assert dep.wait_for_run(sensor, sensor_run, timeout=120) == "success", dep.task_instances(sensor, sensor_run)

    # Each image submitted exactly once: 21 requests at the emulator, one per image, none repeated.
    requests = cluster_emulator.requests()
    documents = [dep.xcom(mapped, mapped_run, "segment", map_index=i) for i in range(20)]
    reference = dep.xcom(sensor, sensor_run, "submit")
    mapped_ids = [d["request_id"] for d in documents]
    assert len(requests) == 21 == cluster_emulator.counters()["submissions"]["total"], len(requests)
    assert cluster_emulator.counters()["billed"] == 21
    assert sorted({r["request_id"] for r in requests}) == sorted([*mapped_ids, reference["request_id"]])
    assert sorted(d["image"]["source"] for d in documents) == sorted(str(p) for p in photos)
    assert all(d["masks"] for d in documents), [d for d in documents if not d["masks"]][:1]
    summary = dep.xcom(mapped, mapped_run, "summarize")
    assert summary["images"] == 20 and not summary["images_without_masks"], summary

    # The sensor waited in a triggerer for the request submit sent, and the masks were copied to output_path.
    assert "deferred" in dep.task_states_seen(sensor, sensor_run, "wait")
    result = dep.xcom(sensor, sensor_run, "read_result")
    assert result["request_id"] == reference["request_id"] and result["masks"], result
    assert len(list(out.rglob("*.png"))) >= len(result["masks"]), sorted(out.rglob("*"))

    hosts = {h for h in dep.hostnames(mapped, mapped_run, "segment").values()}
    hosts |= {h for task in ("submit", "wait", "read_result") for h in dep.hostnames(sensor, sensor_run, task).values()}
    assert hosts == set(WORKERS), hosts
    assert_only_the_finished_result_is_kept(dep, mapped, mapped_run)
    assert_only_the_finished_result_is_kept(dep, sensor, sensor_run)


def assert_only_the_finished_result_is_kept(dep, dag_id: str, run_id: str) -> None:
    """A single-image task that succeeded keeps its result for a later try of the run (Airflow can fail a try after
    it finished; a clear of the run replaces it): one record per task instance, plus the parts of its document."""
    rows = dep.query(
        "SELECT task_id, map_index, key FROM task_state_store WHERE dag_id=? AND run_id=?", (dag_id, run_id)
    )
    assert rows and all(key == "fal_request" or key.startswith("fal_request.part.") for _, _, key in rows), rows
    records = [(task, index) for task, index, key in rows if key == "fal_request"]
    assert len(records) == len(set(records)), rows


def batch_trigger(dep, dag_id: str, run_id: str) -> tuple[int, str] | None:
    """``(trigger id, triggerer)`` of the deferred batch task once a triggerer holds its trigger."""
    row = dep.query_one(
        "SELECT t.id, t.triggerer_id FROM task_instance ti JOIN trigger t ON t.id = ti.trigger_id "
        "WHERE ti.dag_id=? AND ti.run_id=? AND ti.task_id='segment' AND ti.state='deferred'",
        (dag_id, run_id),
    )
    if not row or row[1] is None:
        return None
    return int(row[0]), dep.triggerer_of(row[1])


def trigger_log_files(dep, dag_id: str, run_id: str) -> dict[str, Path]:
    """The try-1 trigger log files of the batch task, by the triggerer (hostname) that wrote each."""
    files = {}
    for path in dep.task_log_paths(dag_id, run_id, "segment"):
        if ".trigger." in path.name:
            job = path.name.rsplit(".trigger.", 1)[1].removesuffix(".log")
            files[dep.triggerer_of(int(job)) or job] = path
    return files


def test_killed_triggerer_hands_the_batch_trigger_to_the_other(whole_cluster, dag_writer, cluster_emulator, tmp_path):
    """300 images wait at fal (one at a time, 60 s each, so nothing finishes and the trigger cannot fire early);
    the triggerer holding the batch trigger is SIGKILLed; the other one takes the trigger over once the dead one's
    heartbeat is older than ``triggerer_health_check_threshold`` (6 s here), rebuilt from its kwargs. Then fal
    speeds up and the batch finishes: every image paid once, every image in the manifest, nothing cancelled."""
    dep = whole_cluster
    paths = write_photos(tmp_path / "in", 300, seed=61)
    out = tmp_path / "out"
    cluster_emulator.configure(concurrency=1, service_time_s=60.0)
    dag_id = dag_writer(dag_source(kill_after=0))
    run_id = dep.trigger(dag_id, conf={"images": str(paths[0].parent), "out": str(out)}, watch=["segment"])
    held = wait_until(lambda: batch_trigger(dep, dag_id, run_id), 300, 0.3, what="a triggerer holding the trigger")
    trigger_id, holder = held
    wait_until(
        lambda: holder in trigger_log_files(dep, dag_id, run_id), 60, 0.3, what=f"the batch trigger running in {holder}"
    )
    # Up to max_in_flight (256 by default) submitted before deferring; none finished: all of them wait at fal.
    assert cluster_emulator.counters()["submissions"]["total"] >= 200, cluster_emulator.counters()
    survivor = next(t for t in TRIGGERERS if t != holder)
    # The trigger's kwargs as stored (Fernet-encrypted JSON) fit MySQL's 64 KB TEXT column with this many waiting.
    stored = dep.query_one("SELECT length(kwargs) FROM trigger WHERE id=?", (trigger_id,))[0]
    assert stored < 65535, stored

    killed_at = time.monotonic()
    dep.kill_component(holder)
    wait_until(
        lambda: batch_trigger(dep, dag_id, run_id) == (trigger_id, survivor),
        120,
        0.3,
        what=f"{survivor} taking trigger {trigger_id} over",
    )
    print(
        f"\n[triggerer takeover] trigger kwargs {stored} characters stored for "
        f"{cluster_emulator.counters()['submissions']['total']} waiting requests; {survivor} held the trigger "
        f"{time.monotonic() - killed_at:.1f}s after {holder} was killed (threshold 6 s, heartbeat 1 s)"
    )
    wait_until(
        lambda: survivor in trigger_log_files(dep, dag_id, run_id), 60, 0.3, what=f"the trigger running in {survivor}"
    )
    counters = cluster_emulator.counters()
    assert counters["completed"] < 300 - 200, counters  # most of the batch was still waiting at the takeover
    cluster_emulator.configure(concurrency=16, service_time_s=0.05)
    assert dep.wait_for_run(dag_id, run_id, timeout=400) == "success", dep.task_instances(dag_id, run_id)

    summary = dep.xcom(dag_id, run_id, "segment")
    assert (summary["images"], summary["succeeded"], summary["resubmissions"]) == (300, 300, 0), summary
    assert_every_image_once(out, paths, summary, cluster_emulator)
    counters = cluster_emulator.counters()
    assert counters["submissions"]["total"] == 300 and counters["cancels"]["total"] == 0, counters
    assert {holder, survivor} <= set(trigger_log_files(dep, dag_id, run_id))
    assert_only_the_finished_summary_is_kept(dep, dag_id, run_id)


def test_killed_worker_mid_submission_retries_on_the_other_and_pays_once(
    whole_cluster, dag_writer, cluster_emulator, tmp_path
):
    """The worker running the batch is SIGKILLed (with its task processes) while a submit is in flight: every 11th
    submit is held 2 s at the emulator, and the kill comes once the 11th has arrived, before fal created it. The
    scheduler fails the try when its heartbeat is 20 s old; the retry can only run on the other worker. It
    reattaches to the 10 saved requests, waits out the open reservation's lease (nobody can tell whether that call
    created a request), sends that image again and the rest once: each image billed once."""
    dep = whole_cluster
    paths = write_photos(tmp_path / "in", 120, seed=71)
    out = tmp_path / "out"
    cluster_emulator.configure(concurrency=8, service_time_s=0.2)
    cluster_emulator.add_fault("slow_response", target="submit", every=11, delay_s=2.0)
    dag_id = dag_writer(dag_source(kill_after=0, submit_concurrency=1))
    run_id = dep.trigger(dag_id, conf={"images": str(paths[0].parent), "out": str(out)}, watch=["segment"])
    wait_until(
        lambda: cluster_emulator.counters()["faults"]["by_kind"].get("slow_response", 0) >= 1,
        300,
        0.02,
        what="the 11th submit held at the emulator",
    )
    first = dep.hostnames(dag_id, run_id, "segment")[(-1, 1)]
    assert first in WORKERS, first
    killed_at = time.monotonic()
    dep.kill_component(first)
    at_kill = cluster_emulator.counters()["submissions"]["total"]
    assert at_kill == 10, at_kill  # killed while the 11th was held, before fal created it
    sampler = dep.watch_task(dag_id, run_id, "segment")
    wait_until(
        lambda: any(t.try_number == 2 and t.state == "running" for t in sampler.transitions),
        300,
        0.2,
        what="try 2 running",
    )
    print(
        f"\n[worker kill] try 2 running {time.monotonic() - killed_at:.1f}s after {first} was killed (heartbeat 20 s)"
    )
    assert dep.wait_for_run(dag_id, run_id, timeout=400) == "success", dep.task_instances(dag_id, run_id)

    hosts = dep.hostnames(dag_id, run_id, "segment")
    survivor = next(w for w in WORKERS if w != first)
    assert hosts[(-1, 1)] == first and len(hosts) >= 2, hosts
    assert all(host == survivor for (_, attempt), host in hosts.items() if attempt > 1), hosts
    summary = dep.xcom(dag_id, run_id, "segment")
    assert (summary["images"], summary["succeeded"], summary["unseen"], summary["resubmissions"]) == (120, 120, 1, 1)
    assert_every_image_once(out, paths, summary, cluster_emulator)
    log2 = dep.task_log(dag_id, run_id, "segment", try_number=2)
    assert "with the image list of its first try (120 rows" in log2 and "not submitted again" in log2, log2[-3000:]
    assert "left no record of fal's answer" in log2
    assert_only_the_finished_summary_is_kept(dep, dag_id, run_id)


def test_sharded_batch_runs_on_both_workers_into_one_manifest(whole_cluster, dag_writer, cluster_emulator, tmp_path):
    """``sam3_sharded_batch`` as shipped: one 2,000-image listing split 4 ways (``shard_count=4``, mapped over
    ``shard_index``), merged by ``Sam3MergeManifestsOperator``. Every image is in exactly one shard and once in the
    merged manifest, paid once. Both workers ran shards, by capacity (as in the first scenario): 4 shard tasks are
    queued at once and each worker reserves at most its 2 slots while a shard lists, checks and submits 500 images."""
    dep = whole_cluster
    paths = write_photos(tmp_path / "in", 2000, seed=81)
    out = tmp_path / "out"
    cluster_emulator.configure(concurrency=16, service_time_s=0.02)
    dag_id = dag_writer(example_source("sam3_sharded_batch"))
    conf = {"input_folder": str(paths[0].parent), "output_path": str(out), "prompt": "box"}
    run_id = dep.trigger(dag_id, conf=conf)
    assert dep.wait_for_run(dag_id, run_id, timeout=500) == "success", dep.task_instances(dag_id, run_id)

    merged = dep.xcom(dag_id, run_id, "merge")
    assert (merged["images"], merged["succeeded"], merged["submissions"]) == (2000, 2000, 2000), merged
    assert cluster_emulator.counters()["submissions"]["total"] == 2000 == cluster_emulator.counters()["billed"]
    rows = read_manifest(merged["manifest"])
    assert sorted(row["source"] for row in rows) == sorted(str(p) for p in paths)  # each image once
    assert all(row["status"] == "succeeded" and row["masks"] for row in rows), [r for r in rows if not r["masks"]][:2]
    assert [row["index"] for row in rows] == list(range(2000))
    shards = [dep.xcom(dag_id, run_id, "segment", map_index=i) for i in range(4)]
    assert sum(s["images"] for s in shards) == 2000 and all(s["images"] for s in shards), shards
    assert {row["shard"] for row in rows} == {0, 1, 2, 3}
    hosts = dep.hostnames(dag_id, run_id, "segment")
    assert {h for (_, attempt), h in hosts.items()} == set(WORKERS), hosts
    assert_only_the_finished_summary_is_kept(dep, dag_id, run_id)


OVERLAPPING_SHARDS_DAG = """
import json

import pendulum
from airflow.sdk import dag

from airflow_provider_sam3.operators.batch import Sam3BatchOperator


@dag(dag_id="{dag_id}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     params={"listings": "[]", "output_path": "", "cache": ""})
def overlapping():
    Sam3BatchOperator.partial(
        task_id="segment",
        output_path="{{ params.output_path }}",
        result_cache="{{ params.cache }}",
        arguments={"prompt": "box"},
        deferrable=True,
        submit_concurrency=4,
    ).expand(images=[json.loads(listing) for listing in LISTINGS])


overlapping()
"""


def test_four_overlapping_batches_sharing_a_result_cache_pay_once_per_image(
    whole_cluster, dag_writer, cluster_emulator, tmp_path
):
    """Four mapped batch tasks whose listings overlap (each image in one to three of them), on two Celery workers
    at once, sharing one result cache: each distinct (image, request) is billed once; every other row of every
    task is answered from the cache (waiting on the task that claimed its key), with that request's id."""
    dep = whole_cluster
    paths = write_photos(tmp_path / "in", 100, seed=95)
    listings = [[str(p) for p in paths[start : start + 40]] for start in (0, 20, 40, 60)]
    cluster_emulator.configure(concurrency=4, service_time_s=0.3)  # the tasks reach shared keys while they pay
    source = OVERLAPPING_SHARDS_DAG.replace("LISTINGS", repr([json.dumps(listing) for listing in listings]))
    dag_id = dag_writer(source)
    out, cache = tmp_path / "out", tmp_path / "cache"
    run_id = dep.trigger(dag_id, conf={"output_path": str(out), "cache": str(cache)})
    assert dep.wait_for_run(dag_id, run_id, timeout=500) == "success", dep.task_instances(dag_id, run_id)

    counters = cluster_emulator.counters()
    assert counters["submissions"]["total"] == 100 == counters["billed"], counters
    summaries = [dep.xcom(dag_id, run_id, "segment", map_index=i) for i in range(4)]
    assert [s["succeeded"] for s in summaries] == [40] * 4, summaries
    assert sum(s["submissions"] for s in summaries) == 100 and sum(s["cache_hits"] for s in summaries) == 60
    paid: dict[str, str] = {}
    for summary in summaries:
        for row in read_manifest(summary["manifest"]):
            assert row["status"] == "succeeded" and row["masks"], row
            assert paid.setdefault(row["source"], row["request_id"]) == row["request_id"]  # one request per image
    billed = {r["request_id"] for r in cluster_emulator.requests() if r["billed"]}
    assert billed == set(paid.values()) and len(paid) == 100
    # Both workers ran these tasks (their first runs or resumes after a claim wait; the last host of each try can
    # be one worker for all four, as a fresh-clone run showed).
    assert dep.workers_that_ran(dag_id) == set(WORKERS), dep.hostnames(dag_id, run_id, "segment")
