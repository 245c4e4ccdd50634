"""The emulator's memory stays bounded (results' files and bodies within byte budgets, oldest expiring first, as
fal's retention does) and large photos are segmented on a reduced copy with masks still at the photo's full size."""

from __future__ import annotations

import io

import fal_client
from emulator_helpers import box_mask, iou, raw_client, squares_image
from PIL import Image

from airflow_provider_sam3.media.inputs import to_data_uri
from airflow_provider_sam3.media.masks import mask_from_image

IMAGE_ENDPOINT = "fal-ai/sam-3/image"


def jpeg_uri(image: Image.Image, **save: object) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, **save)
    return to_data_uri(buffer.getvalue(), "image/jpeg")


def test_a_large_photo_gets_full_size_masks_and_a_preview_of_at_most_1024_pixels(fal_emulator):
    width, height, square = 2400, 1600, (600, 400, 1800, 1200)
    result = fal_client.subscribe(
        IMAGE_ENDPOINT, arguments={"image_url": jpeg_uri(squares_image(width, height, [square])), "prompt": "box"}
    )
    [mask_file] = result["masks"]
    assert (mask_file["width"], mask_file["height"]) == (width, height)
    preview_size = (result["image"]["width"], result["image"]["height"])
    assert 512 <= preview_size[0] <= 1024 and preview_size[0] / preview_size[1] == width / height
    with raw_client(fal_emulator) as http:
        mask = mask_from_image(http.get(mask_file["url"]).content)
        preview = Image.open(io.BytesIO(http.get(result["image"]["url"]).content))
    assert mask.shape == (height, width) and iou(mask, box_mask(width, height, square)) > 0.97
    assert preview.size == preview_size


def test_exif_orientation_of_a_reduced_photo_still_swaps_width_and_height(fal_emulator):
    picture = squares_image(1800, 1200, [(300, 300, 900, 900)])
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    result = fal_client.subscribe(IMAGE_ENDPOINT, arguments={"image_url": jpeg_uri(picture, exif=exif), "prompt": "x"})
    assert (result["masks"][0]["width"], result["masks"][0]["height"]) == (1200, 1800)


def test_point_prompts_on_a_reduced_photo_are_in_the_photos_own_pixels(fal_emulator):
    boxes = [(200, 200, 800, 800), (1400, 300, 2200, 1100)]
    arguments = {
        "image_url": jpeg_uri(squares_image(2400, 1600, boxes)),
        "prompt": "",
        "point_prompts": [{"x": 1800, "y": 700, "label": 1}],
    }
    [mask_file] = fal_client.subscribe(IMAGE_ENDPOINT, arguments=arguments)["masks"]
    with raw_client(fal_emulator) as http:
        mask = mask_from_image(http.get(mask_file["url"]).content)
    assert iou(mask, box_mask(2400, 1600, boxes[1])) > 0.97 and not mask[500, 500]


def test_files_and_result_bodies_stay_within_their_budgets_oldest_expiring_first(fal_emulator):
    """Results are held until fetched (as fal keeps them for their retention), then within the budget."""
    fal_emulator.configure(media_budget_bytes=40_000, result_budget_bytes=1_500)
    image = jpeg_uri(squares_image(640, 480, [(100, 100, 500, 400)]))
    handles = [fal_client.submit(IMAGE_ENDPOINT, arguments={"image_url": image, "prompt": "x"}) for _ in range(12)]
    for handle in handles:
        while not isinstance(handle.status(), fal_client.Completed):
            pass
    assert fal_emulator.counters()["held"]["result_bytes"] > 1_500  # nobody fetched them yet: all kept
    newest = [handle.get() for handle in handles][-1]  # fetched: now they may go, oldest first
    held = fal_emulator.counters()["held"]
    assert 0 < held["media_bytes"] <= 40_000 and held["media_expired_early"] > 0
    assert 0 < held["result_bytes"] <= 1_500
    with raw_client(fal_emulator) as http:
        assert http.get(newest["masks"][0]["url"]).status_code == 200  # the newest files are served
        key = {"Authorization": f"Key {fal_emulator.api_key}"}
        oldest = http.get(handles[0].response_url, headers=key)
    assert oldest.status_code == 404 and "expired" in oldest.text  # the oldest result body went first
    expired = [r["result_expired"] for r in fal_emulator.requests()]
    assert expired[0] is True and expired[-1] is False


def test_a_submit_asking_for_a_short_media_lifetime_gets_its_files_expired_then(fal_emulator):
    """X-Fal-Object-Lifecycle-Preference, as FalHook sends it for media_expires_in, shortens the files' lifetime."""
    from airflow_provider_sam3.hooks.fal_client_internals import LIFECYCLE_HEADER, lifecycle_header_value

    image = jpeg_uri(squares_image(320, 240, [(80, 60, 240, 180)]))
    arguments = {"image_url": image, "prompt": "x"}
    client = fal_client.SyncClient()
    default = client.submit(IMAGE_ENDPOINT, arguments).get()
    short = client.submit(IMAGE_ENDPOINT, arguments, headers={LIFECYCLE_HEADER: lifecycle_header_value(60)}).get()
    urls = [default["masks"][0]["url"], short["masks"][0]["url"]]
    default_expiry, short_expiry = fal_emulator._call(lambda core: [core.media.resolve(u).expires_at for u in urls])
    assert short_expiry < default_expiry  # stored later, yet expires first: 60 s asked for, against the default hour
