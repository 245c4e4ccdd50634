"""One image: its SAM 3 embedding, stored once, then several text-prompt segmentations, one fal request per prompt.

What it shows: ``EmbedImageOperator`` (``fal-ai/sam-3/image/embed``, needs ``output_path``) writes the embedding
bytes to ``<output_path>/embedding/<request_id>/embedding.bin`` and returns a small document (location, size,
sha256); ``SegmentImageOperator.partial(...).expand(prompt=...)`` then runs one segmentation per prompt, and
``catalog`` joins them into one record per image.

What the embedding is for: fal's SAM 3 image endpoints take no embedding as input, so the prompt runs do **not**
reuse it. Each prompt is its own full request ($0.005 each) that sends the image again. The embedding is stored for
other uses: similarity search, deduplication or clustering of images, or a downstream model that consumes SAM 3
image features. fal does not document its dtype or shape, so this DAG treats it as opaque bytes (checked against the
document's size and sha256); decode it with ``EmbeddingResult.load_array(dtype, shape)`` once you know both. The
prompt runs wait for the embedding only to keep the run easy to follow; they do not need it and could run in
parallel with it.

Parameters: ``image`` (a local path or an https URL; default ``$SAM3_EXAMPLE_IMAGE``, else
``/tmp/sam3-photos/000_sneaker.jpg``), ``prompts`` (a list of text prompts), ``output_path``.

Run it against fal.ai (a ``fal`` connection ``fal_default``, or ``FAL_KEY``; $0.005 for the embedding and $0.005
per prompt)::

    airflow dags test sam3_embed_then_prompt -c '{"image": "/path/to/photo.jpg", "prompts": ["shoe", "laces"]}'

or offline against the bundled emulator, on the sample photos ``python dags_examples/_demo.py`` writes::

    rm -f /tmp/fal.env; python -m airflow_provider_sam3.testing.emulator --port 8443 --env-file /tmp/fal.env &
    until [ -s /tmp/fal.env ]; do sleep 0.2; done; set -a; . /tmp/fal.env; set +a
    export SAM3_EXAMPLE_IMAGE=$PWD/out/demo/inputs/000_sneaker.jpg
    airflow dags test sam3_embed_then_prompt

Tested by ``tests/integration/examples/test_embed_then_prompt_example.py``.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import dag, task

from airflow_provider_sam3.operators.sam3 import EmbedImageOperator, SegmentImageOperator


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "image": os.environ.get("SAM3_EXAMPLE_IMAGE", "/tmp/sam3-photos/000_sneaker.jpg"),
        "prompts": ["product", "shadow", "background object"],
        "output_path": "file:///tmp/sam3-embed-then-prompt",
    },
    tags=["sam3", "example"],
)
def sam3_embed_then_prompt():
    embedding = EmbedImageOperator(
        task_id="embed",
        image="{{ params.image }}",
        output_path="{{ params.output_path }}/embedding",  # required: the bytes are written here, never to XCom
        deferrable=True,
        poll_interval=0.5,
        retries=2,
    )

    @task
    def prompt_list(params: dict | None = None) -> list[str]:
        """The prompts to run, without blanks and duplicates (each one costs a request)."""
        prompts = list(dict.fromkeys(str(p).strip() for p in params["prompts"] if str(p).strip()))
        if not prompts:
            raise ValueError("params.prompts is empty: give at least one text prompt")
        return prompts

    prompts = prompt_list()

    segments = SegmentImageOperator.partial(
        task_id="segment",
        image="{{ params.image }}",
        apply_mask=False,
        return_multiple_masks=True,
        max_masks=3,
        include_scores=True,
        include_boxes=True,
        output_path="{{ params.output_path }}/masks",
        deferrable=True,
        poll_interval=0.5,
        retries=2,
    ).expand(prompt=prompts)

    embedding >> segments

    @task
    def catalog(
        embedding_document: dict, prompts: list[str], documents: list[dict], params: dict | None = None
    ) -> dict:
        """One record for the image: where its embedding is (verified) and what each prompt found."""
        import json

        from airflow.sdk import ObjectStoragePath

        from airflow_provider_sam3.models.results import EmbeddingResult, SegmentationResult

        embedded = EmbeddingResult.from_xcom(embedding_document)
        stored = ObjectStoragePath(embedded.stored_url)
        embedded.load_bytes(stored)  # raises unless the stored bytes match the document's size and sha256
        record = {
            "image": params["image"],
            "embedding": {
                "url": embedded.stored_url,
                "byte_size": embedded.byte_size,
                "sha256": embedded.sha256,
                "request_id": embedded.request_id,
            },
            "prompts": {},
            "cost_usd": embedded.cost_usd or 0.0,
        }
        for position in range(len(documents)):  # map index i ran prompts[i]
            result = SegmentationResult.from_xcom(documents[position])
            record["prompts"][prompts[position]] = {
                "request_id": result.request_id,
                "masks": len(result.masks),
                "scores": result.scores,
                "pixel_boxes": result.pixel_boxes,
                "mask_urls": [m.location for m in result.masks],
            }
            record["cost_usd"] += result.cost_usd or 0.0
        record["cost_usd"] = round(record["cost_usd"], 4)
        root = params["output_path"]
        (ObjectStoragePath(root if "://" in root else f"file://{root}") / "catalog.json").write_text(
            json.dumps(record, indent=2)
        )
        return record

    catalog(embedding.output, prompts, segments.output)


sam3_embed_then_prompt()
