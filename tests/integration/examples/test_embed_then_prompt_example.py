"""dags_examples/sam3_embed_then_prompt.py under dag.test(): one embedding, one request per prompt."""

from __future__ import annotations

import hashlib
import json

import pytest
from example_runs import load_example, mapped, single

EMBED_ENDPOINT = "fal-ai/sam-3/image/embed"
IMAGE_ENDPOINT = "fal-ai/sam-3/image"


def test_embedding_is_stored_once_and_each_prompt_is_its_own_request(
    run_example, sample_images, fal_emulator, tmp_path
):
    import numpy as np
    from PIL import Image

    from airflow_provider_sam3.models.results import EmbeddingResult
    from airflow_provider_sam3.testing.emulator.apps import EMBEDDING_DTYPE, EMBEDDING_SHAPE, embedding_of

    example = load_example("sam3_embed_then_prompt")
    image = sample_images(2)[1]
    out = tmp_path / "out"
    dag_run, results = run_example(
        example.sam3_embed_then_prompt(),
        image=str(image),
        output_path=f"file://{out}",
        prompts=["mug", "handle", " mug ", "", "shadow"],
    )
    assert dag_run.state == "success", results
    prompts = ["mug", "handle", "shadow"]  # blanks and repeats are not paid for twice
    assert single(results, "prompt_list") == prompts

    # The embedding: written once under output_path, bytes matching the document, and the embedding of this image.
    embedding = single(results, "embed")
    assert embedding["kind"] == "sam3.embedding" and embedding["endpoint_id"] == EMBED_ENDPOINT
    stored = out / "embedding" / embedding["request_id"] / "embedding.bin"
    assert embedding["stored_url"] == f"file://{stored}"
    data = stored.read_bytes()
    assert len(data) == embedding["byte_size"] > 0
    assert hashlib.sha256(data).hexdigest() == embedding["sha256"]
    array = EmbeddingResult.from_xcom(embedding).load_array(EMBEDDING_DTYPE, EMBEDDING_SHAPE)
    assert np.array_equal(array, embedding_of(Image.open(image)))

    # One segmentation request per prompt, none reusing the embedding's request.
    documents = mapped(results, "segment")
    assert len(documents) == len(prompts)
    counters = fal_emulator.counters()
    assert counters["submissions"] == {
        "total": 1 + len(prompts),
        "by_endpoint": {EMBED_ENDPOINT: 1, IMAGE_ENDPOINT: len(prompts)},
    }
    request_ids = [d["request_id"] for d in documents]
    assert len(set(request_ids + [embedding["request_id"]])) == 1 + len(prompts)
    assert {r["request_id"] for r in fal_emulator.requests()} == {*request_ids, embedding["request_id"]}
    for document in documents:
        assert document["endpoint_id"] == IMAGE_ENDPOINT and document["image"]["source"] == str(image)
        assert document["masks"] and all(m["stored_url"].startswith(f"file://{out}/masks/") for m in document["masks"])

    # The catalog joins them: prompt i -> the request of map index i; also written next to the outputs.
    record = single(results, "catalog")
    assert record["image"] == str(image)
    assert record["embedding"] == {
        "url": embedding["stored_url"],
        "byte_size": embedding["byte_size"],
        "sha256": embedding["sha256"],
        "request_id": embedding["request_id"],
    }
    assert list(record["prompts"]) == prompts
    for prompt, document in zip(prompts, documents):
        entry = record["prompts"][prompt]
        assert entry["request_id"] == document["request_id"]
        assert entry["masks"] == len(document["masks"])
        assert entry["scores"] == [m["score"] for m in document["masks"]]
        assert entry["pixel_boxes"] == [m["pixel_box"] for m in document["masks"]]
        assert entry["mask_urls"] == [m["stored_url"] for m in document["masks"]]
    assert record["cost_usd"] == pytest.approx(0.005 * (1 + len(prompts)))
    assert json.loads((out / "catalog.json").read_text()) == record
