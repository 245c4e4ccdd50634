"""A small batch with dynamic task mapping: one deferrable SAM 3 task (one fal request) per image, then a summary.

What it shows: ``SegmentImageOperator.partial(...).expand(image=...)`` over a list built at run time. Each image is
its own task instance: its own retries, its own link to the fal request, its own result document, and it waits in
the triggerer rather than on a worker. That suits tens of images; for thousands, one task instance each is heavy
for the scheduler (see README, "batch operator"), so the DAG refuses more than ``max_images``.

Parameters: ``input_folder`` (every image file in it; default ``$SAM3_EXAMPLE_IMAGES``, else ``/tmp/sam3-photos``),
or ``images`` (an explicit list of paths or https URLs, which wins over the folder), ``prompt``, ``max_images``.

Run it against fal.ai (a ``fal`` connection ``fal_default``, or ``FAL_KEY``; $0.005 per image)::

    airflow dags test sam3_mapped_small_batch -c '{"input_folder": "/path/to/photos", "prompt": "product"}'

or offline against the bundled emulator, on the sample photos ``python dags_examples/_demo.py`` writes::

    rm -f /tmp/fal.env; python -m airflow_provider_sam3.testing.emulator --port 8443 --env-file /tmp/fal.env &
    until [ -s /tmp/fal.env ]; do sleep 0.2; done; set -a; . /tmp/fal.env; set +a
    export SAM3_EXAMPLE_IMAGES=$PWD/out/demo/inputs
    airflow dags test sam3_mapped_small_batch

Tested by ``tests/integration/examples/test_mapped_small_batch_example.py``.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import dag, task

from airflow_provider_sam3.operators.sam3 import SegmentImageOperator


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "input_folder": os.environ.get("SAM3_EXAMPLE_IMAGES", "/tmp/sam3-photos"),
        "images": [],
        "prompt": "product",
        "max_images": 50,
    },
    tags=["sam3", "example"],
)
def sam3_mapped_small_batch():
    @task
    def list_images(params: dict | None = None) -> list[str]:
        """The explicit ``images`` list if given, else every image file in ``input_folder``, sorted (resolved as the
        batch operator resolves its ``images``: folders and globs, local or on object storage)."""
        from airflow_provider_sam3.operators.image_listing import list_images

        field, given = ("images", params["images"]) if params["images"] else ("input_folder", params["input_folder"])
        images = list_images(given, field_name=field)
        if len(images) > int(params["max_images"]):
            raise ValueError(
                f"{len(images)} images is more than max_images={params['max_images']}: one task per "
                "image suits small batches; split the input or raise max_images knowingly"
            )
        return images

    images = list_images()

    masks = SegmentImageOperator.partial(
        task_id="segment",
        prompt="{{ params.prompt }}",
        apply_mask=False,  # raw masks only: no composited preview to pay bandwidth for
        return_multiple_masks=True,
        max_masks=4,
        include_scores=True,
        include_boxes=True,
        deferrable=True,
        poll_interval=0.5,
        retries=2,  # a retry reattaches to the same fal request; it never pays twice
        max_active_tis_per_dagrun=8,  # at most 8 requests in flight per run
    ).expand(image=images)

    @task
    def summarize(documents: list[dict]) -> dict:
        """One line per image (request, masks, best score, pixel boxes) and the batch totals."""
        from airflow_provider_sam3.models.results import SegmentationResult

        per_image = []
        for position in range(len(documents)):  # indexing, not iterating: no probe past the last XCom
            result = SegmentationResult.from_xcom(documents[position])
            scores = [s for s in result.scores if s is not None]
            per_image.append(
                {
                    "image": result.image.source if result.image else None,
                    "request_id": result.request_id,
                    "masks": len(result.masks),
                    "best_score": max(scores) if scores else None,
                    "pixel_boxes": result.pixel_boxes,
                    "cost_usd": result.cost_usd,
                }
            )
        summary = {
            "images": len(per_image),
            "masks": sum(line["masks"] for line in per_image),
            "images_without_masks": [line["image"] for line in per_image if line["masks"] == 0],
            "cost_usd": round(sum(line["cost_usd"] or 0.0 for line in per_image), 4),
            "per_image": per_image,
        }
        print(f"{summary['images']} images, {summary['masks']} masks, ${summary['cost_usd']:.3f}")
        return summary

    summarize(masks.output)


sam3_mapped_small_batch()
