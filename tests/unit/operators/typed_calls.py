"""Calls of the typed operators that mypy checks against ``operators/sam3.pyi`` (``test_operator_stubs.py``): each
line marked ``# error: <part of mypy's message>`` must be an error, and no other line. Never run."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import XComArg

from airflow_provider_sam3.operators.sam3 import EmbedImageOperator, SegmentImageOperator, SegmentVideoOperator


def calls(upstream: XComArg) -> None:
    SegmentImageOperator(task_id="a", image="/data/a.jpg", prompt="shoe", max_masks=4, return_multiple_masks=True)
    SegmentImageOperator(task_id="b", image_url=upstream, point_prompts=[{"x": 10, "y": 20, "label": 1}])
    SegmentImageOperator(task_id="c", prompt="shoe", priority="low", start_timeout=600, timeout=timedelta(hours=2))
    SegmentVideoOperator(task_id="d", video_url="https://example.com/v.mp4", version="3.1", max_num_objects=8)
    EmbedImageOperator(task_id="e", image="/data/a.jpg", output_path="/data/out", retries=2)
    SegmentImageOperator(task_id="f", promt="shoe")  # error: Unexpected keyword argument "promt"
    SegmentImageOperator(task_id="g", max_masks="many")  # error: Argument "max_masks"
    SegmentImageOperator(task_id="h", output_format="gif")  # error: Argument "output_format"
    SegmentVideoOperator(task_id="i", image="/data/a.jpg")  # error: Unexpected keyword argument "image"
    SegmentImageOperator(task_id="j", webhook="https://example.com/hook")  # error: Unexpected keyword argument
    SegmentImageOperator(task_id="k", retries="3")  # error: Argument "retries"
    EmbedImageOperator(image_url="https://example.com/a.jpg")  # error: Missing named argument "task_id"
