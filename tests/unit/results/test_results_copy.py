"""copy_outputs: outputs land in the user's storage under stable names, and the document points at them."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from airflow.sdk import ObjectStoragePath
from results_helpers import HEIGHT, MEDIA, WIDTH, Downloads, build

from airflow_provider_sam3.endpoints import ENDPOINTS
from airflow_provider_sam3.exceptions import InputValidationError
from airflow_provider_sam3.media.embedding import encode_embedding
from airflow_provider_sam3.media.render import mask_to_png
from airflow_provider_sam3.models.results import (
    INLINE_DATA_LIMIT,
    EmbeddingResult,
    FilesResult,
    ResultDocumentError,
    SegmentationResult,
    result_from_xcom,
)
from airflow_provider_sam3.storage.outputs import copy_outputs, require_output_path, resolve_output_path


def _listing(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_copy_image_outputs(tmp_path, image_output, downloads, mask_pngs, mask_arrays):
    document = build("fal-ai/sam-3/image", image_output, image={"width": WIDTH, "height": HEIGHT})
    target = ObjectStoragePath(f"file://{tmp_path}/out")
    copied = copy_outputs(document, target, download=downloads, output_json=image_output)

    folder = tmp_path / "out" / "req-1"
    files = _listing(folder)
    assert sorted(files) == ["mask_000.png", "mask_001.png", "preview.png", "result.json"]
    assert files["mask_000.png"] == mask_pngs[f"{MEDIA}/mask_0.png"]
    assert files["mask_001.png"] == mask_pngs[f"{MEDIA}/mask_1.png"]
    assert files["preview.png"] == mask_pngs[f"{MEDIA}/preview.png"]

    assert copied.output_location == f"file://{folder}"
    assert [m.stored_url for m in copied.masks] == [f"file://{folder}/mask_000.png", f"file://{folder}/mask_001.png"]
    assert copied.preview.stored_url == f"file://{folder}/preview.png"
    assert [m.url for m in copied.masks] == [m.url for m in document.masks]  # fal's URLs stay for reference
    assert document.output_location is None and document.masks[0].stored_url is None  # input not mutated
    assert SegmentationResult.from_xcom(files["result.json"]) == copied
    assert copied.to_rows()[0]["mask_url"] == f"file://{folder}/mask_000.png"
    # the copies are readable without fal
    for got, want in zip(copied.mask_arrays(), mask_arrays):
        np.testing.assert_array_equal(got, want)


def test_copy_is_idempotent(tmp_path, image_output, downloads):
    document = build("fal-ai/sam-3/image", image_output)
    first = copy_outputs(document, str(tmp_path), download=downloads, output_json=image_output)
    before = _listing(tmp_path / "req-1")
    (tmp_path / "req-1" / "mask_000.png").write_bytes(b"half-written by a killed try")
    second = copy_outputs(document, str(tmp_path), download=downloads, output_json=image_output)
    assert second == first
    assert _listing(tmp_path / "req-1") == before
    # copying an already-copied document again changes nothing either
    third = copy_outputs(second, f"file://{tmp_path}", download=downloads, output_json=image_output)
    assert third == first and _listing(tmp_path / "req-1") == before


@pytest.mark.parametrize("form", ["plain", "file-url", "trailing-slash", "pathlib"])
def test_output_path_forms(tmp_path, image_output, downloads, form):
    given = {
        "plain": str(tmp_path),
        "file-url": f"file://{tmp_path}",
        "trailing-slash": f"file://{tmp_path}/",
        "pathlib": tmp_path,
    }[form]
    copied = copy_outputs(build("fal-ai/sam-3/image", image_output), given, download=downloads)
    assert (tmp_path / "req-1" / "mask_001.png").exists()
    assert copied.masks[1].stored_url.startswith("file://") and copied.masks[1].stored_url.endswith(
        "req-1/mask_001.png"
    )


def test_relative_and_bad_output_paths_are_refused():
    with pytest.raises(InputValidationError, match="output_path.*relative"):
        resolve_output_path("outputs/sam3")
    with pytest.raises(InputValidationError, match="output_path"):
        resolve_output_path(42)
    assert resolve_output_path(None) is None
    assert str(resolve_output_path("s3://aws_default@bucket/prefix")) == "s3://aws_default@bucket/prefix"


def test_no_output_path_copies_nothing(image_output, downloads):
    document = build("fal-ai/sam-3/image", image_output)
    assert copy_outputs(document, None, download=downloads) is document
    assert downloads.calls == []


def test_sync_mode_data_uris_are_decoded_not_downloaded(tmp_path, mask_arrays):
    pngs = [mask_to_png(m) for m in mask_arrays]
    uris = ["data:image/png;base64," + base64.b64encode(p).decode() for p in pngs]
    output = {"masks": [{"url": u} for u in uris], "image": {"url": uris[0], "content_type": "image/png"}}
    document = build("fal-ai/sam-3/image", output)
    nothing = Downloads({})
    copied = copy_outputs(document, tmp_path, download=nothing, output_json=output)
    assert nothing.calls == []
    assert (tmp_path / "req-1" / "mask_001.png").read_bytes() == pngs[1]
    assert (tmp_path / "req-1" / "preview.png").read_bytes() == pngs[0]
    assert copied.masks[1].url is None and copied.masks[1].stored_url.endswith("mask_001.png")
    np.testing.assert_array_equal(copied.mask_arrays()[1], mask_arrays[1])
    with pytest.raises(ResultDocumentError, match=r"masks\[0\].*output_json"):
        copy_outputs(document, tmp_path / "again", download=nothing)


def test_rle_documents_keep_rle_inline_and_write_result_json(tmp_path, rle_output):
    document = build("fal-ai/sam-3/image-rle", rle_output, image={"width": WIDTH, "height": HEIGHT})
    copied = copy_outputs(document, tmp_path, download=Downloads({}), output_json=rle_output)
    assert sorted(_listing(tmp_path / "req-1")) == ["result.json"]
    assert [m.rle for m in copied.masks] == rle_output["rle"]
    assert copied.output_location == f"file://{tmp_path}/req-1"


def test_embedding_written_and_read_back(tmp_path):
    array = np.arange(2 * 3 * 4, dtype="<f4").reshape(2, 3, 4) / 7
    output = {"embedding_b64": encode_embedding(array)}
    document = build("fal-ai/sam-3/image/embed", output)
    copied = copy_outputs(document, ObjectStoragePath(f"file://{tmp_path}"), download=Downloads({}), output_json=output)
    assert isinstance(copied, EmbeddingResult)
    assert (tmp_path / "req-1" / "embedding.bin").read_bytes() == array.tobytes()
    assert copied.stored_url == f"file://{tmp_path}/req-1/embedding.bin"
    assert sorted(_listing(tmp_path / "req-1")) == ["embedding.bin", "result.json"]

    wire = result_from_xcom(json.loads(json.dumps(copied.to_xcom())))
    np.testing.assert_array_equal(wire.load_array("<f4", (2, 3, 4)), array)
    np.testing.assert_array_equal(wire.load_array("<f4", 24, ObjectStoragePath(copied.stored_url)), array.ravel())
    assert wire.load_bytes(str(tmp_path / "req-1" / "embedding.bin")) == array.tobytes()
    with pytest.raises(InputValidationError, match="needs 48 bytes"):
        wire.load_array("<f2", (2, 3, 4))

    (tmp_path / "req-1" / "embedding.bin").write_bytes(array.tobytes()[::-1])
    with pytest.raises(ResultDocumentError, match="sha256"):
        wire.load_bytes()


def test_embedding_needs_an_output_path_and_the_output(tmp_path):
    output = {"embedding_b64": encode_embedding(np.zeros(4, dtype="<f4"))}
    document = build("fal-ai/sam-3/image/embed", output)
    with pytest.raises(InputValidationError, match="output_path"):
        copy_outputs(document, None, download=Downloads({}), output_json=output)
    with pytest.raises(ResultDocumentError, match="embedding_b64.*output_json"):
        copy_outputs(document, tmp_path, download=Downloads({}))
    other = {"embedding_b64": encode_embedding(np.ones(4, dtype="<f4"))}
    with pytest.raises(ResultDocumentError, match="sha256"):
        copy_outputs(document, tmp_path, download=Downloads({}), output_json=other)


def test_require_output_path_refuses_embeddings_without_one():
    with pytest.raises(InputValidationError, match="output_path.*embedding"):
        require_output_path(ENDPOINTS["fal-ai/sam-3/image/embed"], None)
    require_output_path(ENDPOINTS["fal-ai/sam-3/image/embed"], "/data/embeddings")
    require_output_path(ENDPOINTS["fal-ai/sam-3/image"], None)
    with pytest.raises(InputValidationError, match="relative"):
        require_output_path(ENDPOINTS["fal-ai/sam-3/image"], "rel/dir")


def test_3d_files_get_field_names_and_extensions(tmp_path):
    output = {
        "gaussian_splat": {"url": f"{MEDIA}/abc/splat.ply", "content_type": "application/octet-stream"},
        "model_glb": {"url": f"{MEDIA}/scene", "content_type": "model/gltf-binary"},
        "individual_glbs": [{"url": f"{MEDIA}/o0.glb"}, {"url": f"{MEDIA}/o1?sig=1"}],
        "artifacts_zip": {"url": f"{MEDIA}/a", "file_name": "artifacts.zip"},
        "metadata": [{"object_index": 0, "translation": [0.0, 0.0, 1.0]}],
    }
    served = {
        f"{MEDIA}/abc/splat.ply": b"ply",
        f"{MEDIA}/scene": b"glb",
        f"{MEDIA}/o0.glb": b"o0",
        f"{MEDIA}/o1?sig=1": b"o1",
        f"{MEDIA}/a": b"zip",
    }
    document = build("fal-ai/sam-3/3d-objects", output)
    copied = copy_outputs(document, tmp_path, download=Downloads(served), output_json=output)
    files = _listing(tmp_path / "req-1")
    assert files == {
        "artifacts_zip.zip": b"zip",
        "data.json": files["data.json"],
        "gaussian_splat.ply": b"ply",
        "individual_glbs_000.glb": b"o0",
        "individual_glbs_001.bin": b"o1",
        "model_glb.glb": b"glb",
        "result.json": files["result.json"],
    }
    assert json.loads(files["data.json"]) == copied.data == {"metadata": output["metadata"]}
    assert copied.file("individual_glbs[1]").stored_url == f"file://{tmp_path}/req-1/individual_glbs_001.bin"
    assert all(f.stored_url for f in copied.files)
    assert copied.data_stored_url == f"file://{tmp_path}/req-1/data.json"
    assert FilesResult.from_xcom(files["result.json"]) == copied


def test_large_video_rle_data_moves_out_of_xcom(tmp_path):
    frames = 3000
    output = {
        "rle": [f"{i * 7 + 1} 40 {i * 7 + 900} 33" for i in range(frames)],
        "boxes": [[0.5, 0.5, 0.25, 0.125]] * frames,
        "scores": [None] * frames,
    }
    document = build("fal-ai/sam-3/video-rle", output)
    assert document.data_bytes > INLINE_DATA_LIMIT and document.data_oversize  # inline until copied
    copied = copy_outputs(document, tmp_path, download=Downloads({}), output_json=output)
    assert copied.data is None and not copied.data_oversize
    assert copied.data_bytes == document.data_bytes
    assert len(json.dumps(copied.to_xcom())) < 2048
    assert copied.load_data() == output
    assert copied.to_xcom()["data_stored_url"] == f"file://{tmp_path}/req-1/data.json"
    assert FilesResult.from_xcom(copied.to_xcom()).load_data(read=lambda u: b"unused") == output


def test_small_video_rle_data_stays_inline(tmp_path):
    output = {"rle": ["1 2", ""], "boxes": [[0.5, 0.5, 0.1, 0.1], None], "scores": [None, None]}
    copied = copy_outputs(build("fal-ai/sam-3/video-rle", output), tmp_path, download=Downloads({}), output_json=output)
    assert copied.data == output and copied.load_data() == output
    assert json.loads((tmp_path / "req-1" / "data.json").read_bytes()) == output


def test_video_file_copied(tmp_path):
    output = {"video": {"url": f"{MEDIA}/out", "content_type": "video/mp4"}}
    copied = copy_outputs(build("fal-ai/sam-3/video", output), tmp_path, download=Downloads({f"{MEDIA}/out": b"mp4"}))
    assert (tmp_path / "req-1" / "video.mp4").read_bytes() == b"mp4"
    assert copied.file("video").stored_url.endswith("/req-1/video.mp4")
