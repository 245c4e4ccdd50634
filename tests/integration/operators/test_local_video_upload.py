"""A local video goes to fal through its storage (an upload, then a URL in the request), never inline; a retry
of the task reattaches to its request instead of paying again; a FIFO is refused before anything is sent."""

from __future__ import annotations

import os

from airflow.sdk import dag

from airflow_provider_sam3.operators.sam3 import SegmentVideoOperator

CLIP = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 4096


@dag(dag_id="sam3_local_video", schedule=None, params={"video": ""})
def local_video():
    SegmentVideoOperator(task_id="video", video_url="{{ params.video }}", prompt="person", poll_interval=0.2)


DAG = local_video()


def test_a_local_video_is_uploaded_and_sent_as_a_url(run_dag, fal_emulator, tmp_path, monkeypatch):
    import fal_client.client

    monkeypatch.setattr(fal_client.client, "REST_URL", fal_emulator.base_url)
    monkeypatch.setattr(fal_client.client, "CDN_URL", fal_emulator.base_url)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(CLIP)
    results = run_dag(DAG, video=str(clip))
    assert results["video"][0] == "success", results
    assert fal_emulator.counters()["uploads"] == {"total": 1, "bytes": len(CLIP)}
    (record,) = fal_emulator.requests()
    assert record["arguments"]["video_url"].startswith(fal_emulator.base_url)
    assert record["arguments"]["video_url"].endswith("/clip.mp4")


def test_a_fifo_named_like_a_video_is_refused_before_anything_is_sent(run_dag, fal_emulator, tmp_path):
    fifo = tmp_path / "camera.mp4"
    os.mkfifo(fifo)
    results = run_dag(DAG, video=str(fifo))
    assert results["video"][0] == "failed"
    counters = fal_emulator.counters()
    assert counters["submissions"]["total"] == 0 and counters["uploads"]["total"] == 0


def test_the_fingerprint_of_a_local_video_survives_a_new_upload_url():
    from airflow_provider_sam3.operators.request_bodies import PreparedRequest

    first = PreparedRequest("fal-ai/sam-3/video", {"video_url": "https://a/1.mp4"}, stable_fields={"video_url": "x"})
    again = PreparedRequest("fal-ai/sam-3/video", {"video_url": "https://a/2.mp4"}, stable_fields={"video_url": "x"})
    other = PreparedRequest("fal-ai/sam-3/video", {"video_url": "https://a/2.mp4"}, stable_fields={"video_url": "y"})
    assert first.fingerprint == again.fingerprint != other.fingerprint
