"""A batch at scale, against the emulator: large inputs through fal's storage, files that must never be read
refused before anything is paid, throttled status rounds that stop early, a trigger whose kwargs stay small, and
a clear that cancels what still waits, newest first."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re

from airflow.sdk import dag
from manifests import manifest_rows

from airflow_provider_sam3.batch.polling import POLL_CONCURRENCY, BatchPoller, ProgressLine, url_templates_of
from airflow_provider_sam3.hooks.fal import FalHook
from airflow_provider_sam3.operators.batch import Sam3BatchOperator
from airflow_provider_sam3.triggers.batch import FalBatchTrigger

PARAMS = {"images": "", "out": ""}


def big_png(path, megabytes: int):
    """A PNG of about ``megabytes`` MB (stored uncompressed): a dark photo with one bright product on it."""
    from PIL import Image, ImageDraw

    side = int((megabytes * 1_000_000 / 3) ** 0.5)
    image = Image.new("RGB", (side, side), (15, 20, 30))
    ImageDraw.Draw(image).rectangle([side // 4, side // 4, side // 2, side // 2], fill=(240, 200, 60))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=0)
    path.write_bytes(buffer.getvalue())
    return path


@dag(dag_id="sam3_batch_scale_upload", schedule=None, params=PARAMS)
def batch_upload():
    Sam3BatchOperator(
        task_id="segment",
        images="{{ params.images }}",
        output_path="{{ params.out }}",
        arguments={"prompt": "box"},
        poll_interval=0.2,
    )


upload_dag = batch_upload()


def test_a_large_input_goes_through_fal_storage_and_small_ones_inline(
    photos, tmp_path, run_batch_dag, fal_emulator, monkeypatch
):
    import fal_client.client

    monkeypatch.setattr(fal_client.client, "REST_URL", fal_emulator.base_url)
    monkeypatch.setattr(fal_client.client, "CDN_URL", fal_emulator.base_url)
    small = photos(2)
    large = big_png(small[0].parent / "large.png", 30)
    assert large.stat().st_size > 30_000_000
    out = tmp_path / "out"
    state, results = run_batch_dag(upload_dag, images=str(small[0].parent), out=str(out))
    assert state == "success", results
    counters = fal_emulator.counters()
    assert counters["uploads"] == {"total": 1, "bytes": large.stat().st_size}
    assert counters["submissions"]["total"] == 3
    sent = {r["request_id"]: r["arguments"]["image_url"] for r in fal_emulator.requests()}
    rows = {row["source"]: row for row in manifest_rows(out)}
    assert sent[rows[str(large)]["request_id"]].startswith(fal_emulator.base_url)  # a URL on fal's storage
    for path in small:
        assert not str(sent[rows[str(path)]["request_id"]]).startswith("http")  # inline: a data URI
    assert all(row["status"] == "succeeded" for row in rows.values())


@dag(dag_id="sam3_batch_scale_refusals", schedule=None, params=PARAMS)
def batch_refusals():
    Sam3BatchOperator(
        task_id="segment",
        images="{{ params.images }}",
        output_path="{{ params.out }}",
        arguments={"prompt": "box"},
        max_input_bytes=2_000_000,
        retries=2,
    )


refusals_dag = batch_refusals()


def test_a_fifo_a_device_and_an_oversized_file_are_refused_before_any_submission(
    photos, tmp_path, run_batch_dag, fal_emulator, capfd
):
    paths = photos(2)
    folder = paths[0].parent
    os.mkfifo(folder / "pipe.png")
    (folder / "zero.png").symlink_to("/dev/zero")
    big_png(folder / "huge.png", 3)
    # Listed by name: a folder's listing refuses the link out of it before looking at the device (next test).
    named = [str(p) for p in paths] + [str(folder / name) for name in ("pipe.png", "zero.png", "huge.png")]
    state, results = run_batch_dag(refusals_dag, images=json.dumps(named), out=str(tmp_path / "out"))
    assert state == "failed"
    assert fal_emulator.counters()["submissions"]["total"] == 0
    assert fal_emulator.counters()["uploads"]["total"] == 0
    log = capfd.readouterr().out
    assert "3 of 5 images cannot be sent, so nothing was submitted" in log
    assert re.search(r"images\[\d\] \(\S+pipe\.png\): .*FIFO", log)
    assert re.search(r"images\[\d\] \(\S+zero\.png\): .*character device", log)
    assert re.search(r"images\[\d\] \(\S+huge\.png\): .*max_input_bytes=2,000,000", log)
    assert "not retried" in log


def test_a_link_out_of_the_folder_given_is_refused_by_name_before_anything_is_sent(
    photos, tmp_path, run_batch_dag, fal_emulator, capfd
):
    """``b.png -> ../private/passport.png`` inside a shared input folder: the listing resolves it and refuses it,
    naming the link and where it leads; nothing is read or sent. A link that stays inside the folder is fine."""
    folder = photos(2)[0].parent
    private = tmp_path / "private"
    private.mkdir()
    photos(1, name="private")[0].rename(private / "passport.png")
    (folder / "inside.png").symlink_to(folder / sorted(p.name for p in folder.iterdir())[0])
    (folder / "b.png").symlink_to("../private/passport.png")
    state, _ = run_batch_dag(refusals_dag, images=str(folder), out=str(tmp_path / "out"))
    assert state == "failed"
    log = capfd.readouterr().out
    assert re.search(r"images: '\S+/b\.png' is a link to '\S+/private/passport\.png', outside '\S+/in'", log), log[
        -2000:
    ]
    assert fal_emulator.counters()["submissions"]["total"] == 0 and fal_emulator.counters()["uploads"]["total"] == 0

    (folder / "b.png").unlink()  # positive control: the same folder, its one link staying inside it
    state, results = run_batch_dag(refusals_dag, images=str(folder), out=str(tmp_path / "out2"))
    assert state == "success", results
    summary = results["segment"][1]
    # The inside link resolves to the file it names: the same image, listed twice, paid once.
    assert (summary["images"], summary["repeats"], fal_emulator.counters()["submissions"]["total"]) == (3, 1, 2)


async def submitted_requests(count: int) -> tuple[FalHook, list[str], dict[str, str]]:
    hook = FalHook()
    refs = [await hook.asubmit("fal-ai/sam-3/image", {"image_url": TINY_PNG, "prompt": "box"}) for _ in range(count)]
    return hook, [ref.request_id for ref in refs], url_templates_of(refs[0])


TINY_PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFklEQVR4nGNkYGD4z4AHMDGMShhUAgBH6gEPkM"
    "8lUwAAAABJRU5ErkJggg=="
)


def test_a_throttled_round_stops_at_its_first_slice(fal_emulator):
    """429 on every status call: each round makes at most one slice of calls, whatever is waiting."""
    fal_emulator.configure(concurrency=1, service_time_s=30.0)

    async def scenario():
        hook, ids, templates = await submitted_requests(120)
        try:
            fal_emulator.add_fault("rate_limit_429", target="status", rate=1.0)
            poller = BatchPoller(
                hook,
                "fal-ai/sam-3/image",
                templates,
                ids,
                deadline=None,
                poll_interval=0.1,
                max_poll_interval=0.1,
                fire_at=None,
                progress=ProgressLine(120, 0, 0, "fal-ai/sam-3/image"),
                log=None,
            )
            per_round = []
            for number in range(4):
                before = fal_emulator.counters()["status_calls"]
                await poller.poll_once(number)
                per_round.append(fal_emulator.counters()["status_calls"] - before)
            return per_round, poller
        finally:
            await hook.aclose()

    per_round, poller = asyncio.run(scenario())
    assert all(calls <= POLL_CONCURRENCY for calls in per_round), per_round
    assert poller.throttled_rounds == 4
    assert poller.throttle_pause(0.1) > 1.0  # the next rounds back off


def test_a_cleared_trigger_cancels_what_is_queued_newest_first_and_leaves_the_running_one(fal_emulator):
    """on_kill cancels the requests still queued, newest first (the queued tail would run and be billed), and
    leaves the one already running: fal bills it whatever happens, and a clear of the task fetches it."""
    fal_emulator.configure(concurrency=1, service_time_s=30.0)

    async def scenario():
        hook, ids, templates = await submitted_requests(300)
        await hook.aclose()
        trigger = FalBatchTrigger("fal-ai/sam-3/image", templates, ids, poll_interval=0.2)
        running = asyncio.ensure_future(trigger.run().__anext__())
        await asyncio.sleep(1.0)  # a few status rounds: the trigger is waiting
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await trigger.on_kill()
        return ids

    ids = asyncio.run(scenario())
    records = {r["request_id"]: r for r in fal_emulator.requests()}
    assert records[ids[0]]["state"] == "IN_PROGRESS" and not records[ids[0]]["cancelled"]  # the one running
    assert fal_emulator.counters()["cancels"]["total"] == 299
    assert all(records[rid]["cancelled"] and not records[rid]["billed"] for rid in ids[1:])
    assert records[ids[-1]]["completed_at"] <= records[ids[1]]["completed_at"]  # the tail went first
    assert fal_emulator.counters()["billed"] == 1


def test_a_cleared_trigger_cancels_every_queued_request_although_the_triggerer_cancels_it_again(fal_emulator):
    """Airflow 3.3's triggerer runs ``on_kill`` under a 30 s ``wait_for`` but cancels the trigger's task again at
    each sync (about each second) until it ends: ``on_kill`` must not stop at the first of those cancels."""
    import structlog

    fal_emulator.configure(concurrency=1, service_time_s=30.0)

    def logged(text: str) -> bool:
        return any(text in entry["event"] for entry in logs)

    async def scenario():
        hook, ids, templates = await submitted_requests(120)
        await hook.aclose()
        trigger = FalBatchTrigger("fal-ai/sam-3/image", templates, ids, poll_interval=0.2)

        async def trigger_task() -> None:  # what the triggerer runs for the trigger (airflow 3.3's run_trigger)
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:  # the user's clear
                await asyncio.wait_for(trigger.on_kill(), timeout=30)
                raise

        task = asyncio.ensure_future(trigger_task())
        await asyncio.sleep(0)
        task.cancel()
        while not logged("cancelling the requests of this batch"):  # on_kill has started
            await asyncio.sleep(0.01)
        while not task.done():  # then the cancel the triggerer repeats at each sync
            task.cancel()
            await asyncio.sleep(0.05)
        await asyncio.gather(task, return_exceptions=True)
        for _ in range(600):  # the cancels go on in the loop: wait for the summary logged after the last answer
            if logged("cancels to fal for the"):
                break
            await asyncio.sleep(0.1)
        return ids

    with structlog.testing.capture_logs() as logs:
        ids = asyncio.run(scenario())
    records = {r["request_id"]: r for r in fal_emulator.requests()}
    assert not records[ids[0]]["cancelled"]  # the one running is left to finish
    assert all(records[rid]["cancelled"] and not records[rid]["billed"] for rid in ids[1:])
    assert fal_emulator.counters()["cancels"]["total"] == 119
    assert logged("cancelling the requests of this batch still queued at fal, newest first (120 waiting there)")
    assert logged("sent 119 cancels to fal for the 119 requests of this batch still queued")


@dag(dag_id="sam3_batch_scale_trigger", schedule=None, params=PARAMS)
def batch_bounded_trigger():
    Sam3BatchOperator(
        task_id="segment",
        images="{{ params.images }}",
        output_path="{{ params.out }}",
        arguments={"prompt": "box"},
        deferrable=True,
        max_in_flight=40,
        poll_interval=0.2,
        collect_every=0,
    )


trigger_dag = batch_bounded_trigger()


def test_each_deferral_hands_the_trigger_at_most_max_in_flight_ids(
    photos, tmp_path, run_batch_dag, fal_emulator, capfd
):
    # 20 requests finishing at about 2.7 a second: 7.5 s, longer than the worker waits for itself
    fal_emulator.configure(concurrency=4, service_time_s=1.5)
    paths = photos(100)
    out = tmp_path / "out"
    state, results = run_batch_dag(trigger_dag, images=str(paths[0].parent), out=str(out))
    assert state == "success", results
    log = capfd.readouterr().out
    deferrals = [
        (int(n), int(size))
        for n, size in re.findall(r"Deferring on (\d+) requests at fal \(trigger kwargs: (\d+) bytes\)", log)
    ]
    assert len(deferrals) >= 2 and all(n <= 40 for n, _ in deferrals), deferrals
    assert max(size for _, size in deferrals) < 4_000
    assert fal_emulator.counters()["submissions"]["total"] == 100 == results["segment"][1]["submissions"]
    assert len(manifest_rows(out)) == 100
