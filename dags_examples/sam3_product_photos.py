"""Scheduled product-photo pipeline: the images in a folder -> SAM 3 masks -> transparent cutouts, overlays and a
metadata table (one row per mask).

Each run takes every image in the folder and segments it with one ``Sam3BatchOperator`` task; the result cache
under ``<output_path>/cache`` answers every image whose exact request was already paid (same bytes, same prompt and
fields), so a run over a folder that mostly holds yesterday's photos pays only for the new or changed ones, and a
run over an unchanged folder sends nothing and bills $0. One trigger waits for the whole batch. The task writes in
its own folder ``<output_path>/masks/<dag_id>/<run_id>/segment/`` (each image's masks under ``<request_id>/`` and
``manifest.jsonl``, which lists every image, failed ones included; the summary in XCom names it). Then it renders an
overlay per image (each mask outlined and tagged with the prompt and its score), a contact sheet of the run's
overlays, and a transparent cutout per mask (under ``<output_path>/overlays`` and ``/cutouts``, named by
the image's stem and a hash of its source, so ``shoe.png`` and ``shoe.jpg`` keep their own), and the run's
``metadata.jsonl`` / ``metadata.csv`` next to its manifest, so no run overwrites another's.

One prompt serves the whole folder (``prompt``); a ``prompts.json`` beside the photos can give some of them their own
batch arguments, by file name: ``{"coffee.png": {"prompt": "coffee cup", "box_prompts": [{"x_min": 170, ...}]}}``
(the demo's real photos come with one).

Runs as is against fal.ai (a ``fal`` connection, or ``FAL_KEY``) or against the bundled emulator
(``python -m airflow_provider_sam3.testing.emulator --env-file fal.env`` then ``set -a; . ./fal.env``).
Parameters: ``input_folder`` (a local folder or object-store URL), ``output_path``, ``prompt``, ``max_cost_usd``.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, dag, task

from airflow_provider_sam3.operators.batch import Sam3BatchOperator

PRODUCT_MASKS = Asset("sam3_product_masks")
"""The batch task's outlet: each run that segments photos emits an event naming its manifest, counts and cost
(``sam3_masks_to_table`` runs on it)."""
PROMPTS_FILE = "prompts.json"
CONTACT_SHEET_IMAGES = 48
"""Overlays shown on a run's contact sheet (the first ones; every overlay is in ``overlays/``)."""
CONTACT_SHEET_THUMB = 320
METADATA_COLUMNS = (
    "image",
    "label",
    "request_id",
    "mask_index",
    "score",
    "x_min",
    "y_min",
    "x_max",
    "y_max",
    "area",
    "mask",
    "cutout",
)


def picture_name(source: str) -> str:
    """A file name for an image's pictures that no other image shares: its stem (readable) and a short hash of its
    whole source (``shoe.png`` and ``shoe.jpg``, or ``a/shoe.jpg`` and ``b/shoe.jpg``, are different images)."""
    import hashlib

    stem = source.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return f"{stem}-{hashlib.sha256(source.encode()).hexdigest()[:10]}"


def image_arguments(input_folder: str) -> dict[str, dict]:
    """The per-photo batch arguments of ``prompts.json`` in ``input_folder`` (file name -> arguments), if any."""
    import json

    sidecar = _storage(input_folder) / PROMPTS_FILE
    if not sidecar.exists():
        return {}
    arguments = json.loads(sidecar.read_text())
    if not isinstance(arguments, dict) or not all(isinstance(v, dict) for v in arguments.values()):
        raise ValueError(f"{sidecar} must map file names to batch arguments, like {{'a.jpg': {{'prompt': 'cup'}}}}.")
    return arguments


def _storage(path: str):
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(path if "://" in path else f"file://{path}")


@dag(
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={
        "input_folder": "/tmp/sam3-photos",
        "output_path": "/tmp/sam3-output",
        "prompt": "product",
        "max_cost_usd": 5.0,
    },
    tags=["sam3", "example"],
)
def sam3_product_photos():
    @task
    def folder_images(input_folder: str) -> list:
        """Every image in the folder, sorted, with its own arguments from ``prompts.json`` where it has some;
        skips the run when there are none. (No index of what earlier runs did: the result cache knows.)"""
        from airflow.sdk.exceptions import AirflowSkipException

        from airflow_provider_sam3.operators.image_listing import list_images

        sources = list_images(input_folder)
        if not sources:
            raise AirflowSkipException(f"no images in {input_folder}")
        own = image_arguments(input_folder)
        return [{"image": s, **own[name]} if (name := s.rsplit("/", 1)[-1]) in own else s for s in sources]

    images = folder_images("{{ params.input_folder }}")

    segment = Sam3BatchOperator(
        task_id="segment",
        images=images,
        kind="image",
        arguments={"prompt": "{{ params.prompt }}", "apply_mask": False, "return_multiple_masks": True, "max_masks": 4},
        output_path="{{ params.output_path }}/masks",
        result_cache="{{ params.output_path }}/cache",
        max_cost_usd="{{ params.max_cost_usd }}",
        on_image_failure="report",
        deferrable=True,
        retries=2,
        outlets=[PRODUCT_MASKS],
    )

    @task
    def render(summary: dict, output_path: str, input_folder: str, prompt: str) -> dict:
        """An overlay per image, a cutout per mask and one metadata row per mask, from the batch's manifest."""
        import csv
        import io
        import json

        from airflow_provider_sam3.media.masks import mask_stats
        from airflow_provider_sam3.media.render import contact_sheet, cutout, encode_png, overlay
        from airflow_provider_sam3.storage.batch_results import BatchResults

        root = _storage(output_path)
        for folder in ("overlays", "cutouts"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        batch = BatchResults.from_xcom(summary)
        own = image_arguments(input_folder)
        failures = [{"image": row.source, "error": row.error} for row in batch.failed()]
        rows, succeeded, sheet = [], 0, []
        for image, document in batch.documents():  # each image that succeeded, with its result document
            photo = _storage(image.source).read_bytes()
            name = picture_name(image.source)
            arrays = document.mask_arrays()
            label = own.get(image.source.rsplit("/", 1)[-1], {}).get("prompt", prompt)
            for mask, array in zip(document.to_rows(label), arrays):
                cut = root / "cutouts" / f"{name}_{mask['mask_index']}.png"
                cut.write_bytes(encode_png(cutout(photo, array)))
                rows.append(
                    {
                        **{column: mask.get(column) for column in METADATA_COLUMNS},
                        "image": image.source,
                        "area": mask_stats(array).area,
                        "mask": mask["mask_url"],
                        "cutout": str(cut),
                    }
                )
            picture = overlay(photo, arrays, labels=[label] * len(arrays), scores=document.scores)
            (root / "overlays" / f"{name}.png").write_bytes(encode_png(picture))
            if len(sheet) < CONTACT_SHEET_IMAGES:
                picture.thumbnail((CONTACT_SHEET_THUMB, CONTACT_SHEET_THUMB))  # only the thumbnail is kept
                masks = f"{len(arrays)} mask{'' if len(arrays) == 1 else 's'}"
                sheet.append((picture, f"{image.source.rsplit('/', 1)[-1][:28]}: {masks}"))
            succeeded += 1
        run_folder = _storage(summary["output_path"])  # this run's batch folder, beside its manifest
        sheet_path = run_folder / "contact_sheet.png"
        if sheet:
            pictures, captions = zip(*sheet)
            sheet_path.write_bytes(
                encode_png(contact_sheet(pictures, columns=4, thumb=CONTACT_SHEET_THUMB, captions=captions))
            )
        (run_folder / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        table = io.StringIO()
        writer = csv.DictWriter(table, fieldnames=METADATA_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        (run_folder / "metadata.csv").write_text(table.getvalue())
        return {
            "images": summary["images"],
            "succeeded": succeeded,
            "failed": failures,
            "masks": len(rows),
            "cost_usd": summary["cost_usd"],
            "cache_hits": summary["cache_hits"],
            "manifest": summary["manifest"],
            "metadata": str(run_folder / "metadata.csv"),
            "contact_sheet": str(sheet_path) if sheet else None,
        }

    render(segment.output, "{{ params.output_path }}", "{{ params.input_folder }}", "{{ params.prompt }}")


sam3_product_photos()
