"""Product photos in a folder -> SAM 3 masks -> transparent cutouts, overlays and a metadata table.

Runs as is against fal.ai (a ``fal`` connection or ``FAL_KEY``) or against the bundled emulator. One deferrable
task per image (dynamic task mapping) suits small folders; thousands of images want the batch operator.
Parameters: ``input_folder`` (a local folder or ObjectStoragePath URL), ``output_path`` (where everything is
written), ``prompt``.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_provider_sam3.operators.sam3 import SegmentImageOperator

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".avif")


@dag(
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={"input_folder": "/tmp/sam3-photos", "output_path": "file:///tmp/sam3-output", "prompt": "product"},
    tags=["sam3", "example"],
)
def sam3_product_photos():
    @task
    def list_images(input_folder: str) -> list[str]:
        """Every image file in the folder, sorted, as paths the operator accepts."""
        from airflow.sdk import ObjectStoragePath

        folder = ObjectStoragePath(input_folder if "://" in input_folder else f"file://{input_folder}")
        found = sorted(str(p.path) if p.protocol == "file" else str(p) for p in folder.iterdir()
                       if p.name.lower().endswith(IMAGE_SUFFIXES))
        if not found:
            raise ValueError(f"input_folder {input_folder!r} holds no image ({', '.join(IMAGE_SUFFIXES)})")
        return found

    images = list_images("{{ params.input_folder }}")

    masks = SegmentImageOperator.partial(
        task_id="segment",
        prompt="{{ params.prompt }}",
        apply_mask=False,
        return_multiple_masks=True,
        max_masks=4,
        include_scores=True,
        include_boxes=True,
        output_path="{{ params.output_path }}/masks",
        deferrable=True,
        poll_interval=0.5,
        retries=2,
    ).expand(image=images)

    @task
    def render(documents: list[dict], output_path: str, prompt: str) -> dict:
        """Overlays and cutouts per image, and one metadata row per mask (JSON Lines), next to the masks."""
        import json

        from airflow.sdk import ObjectStoragePath

        from airflow_provider_sam3.media.render import cutout, encode_png, overlay
        from airflow_provider_sam3.models.results import SegmentationResult

        root = ObjectStoragePath(output_path)
        rows, summary = [], {"images": 0, "masks": 0, "cost_usd": 0.0}
        for position in range(len(documents)):  # indexing, not iterating: no probe past the last XCom
            result = SegmentationResult.from_xcom(documents[position])
            source = result.image.source
            photo = ObjectStoragePath(f"file://{source}" if source.startswith("/") else source).read_bytes()
            arrays = result.mask_arrays(read=lambda url: ObjectStoragePath(url).read_bytes())
            stem = source.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            (root / "overlays").mkdir(parents=True, exist_ok=True)
            (root / "cutouts").mkdir(parents=True, exist_ok=True)
            (root / "overlays" / f"{stem}.png").write_bytes(encode_png(overlay(photo, arrays)))
            for index, mask in enumerate(arrays):
                (root / "cutouts" / f"{stem}_{index}.png").write_bytes(encode_png(cutout(photo, mask)))
            rows += result.to_rows(label=prompt, with_area=True, read=lambda url: ObjectStoragePath(url).read_bytes())
            summary["images"] += 1
            summary["masks"] += len(arrays)
            summary["cost_usd"] += result.cost_usd or 0.0
        (root / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        summary["cost_usd"] = round(summary["cost_usd"], 4)
        summary["rows"] = len(rows)
        return summary

    render(masks.output, "{{ params.output_path }}", "{{ params.prompt }}")


sam3_product_photos()
