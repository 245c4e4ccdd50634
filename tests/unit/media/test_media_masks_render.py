from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from airflow_provider_sam3.exceptions import InputValidationError, InvalidImageError
from airflow_provider_sam3.media.masks import MaskStats, mask_from_image, mask_stats
from airflow_provider_sam3.media.render import PALETTE, cutout, encode_png, mask_to_png, overlay

W, H = 40, 30


def _rect_mask() -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[5:15, 10:30] = True  # rows 5..14, columns 10..29
    return mask


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _mask_png(mode: str) -> bytes:
    gray = Image.fromarray(_rect_mask().astype(np.uint8) * 255, "L")
    if mode == "1":
        return _png(gray.convert("1"))
    if mode == "RGBA":
        image = gray.convert("RGBA")  # white on black, fully opaque: luminance decides
        return _png(image)
    return _png(gray.convert(mode))


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "1", "LA", "P"])
def test_mask_from_image_modes(mode):
    mask = mask_from_image(_mask_png(mode))
    assert mask.dtype == np.bool_
    np.testing.assert_array_equal(mask, _rect_mask())


def test_mask_from_image_uses_alpha_when_transparent():
    # Colour says "everything", alpha says "only the rectangle": alpha wins when not fully opaque.
    rgba = np.full((H, W, 4), 255, dtype=np.uint8)
    rgba[..., 3] = _rect_mask().astype(np.uint8) * 255
    mask = mask_from_image(Image.fromarray(rgba, "RGBA"))
    np.testing.assert_array_equal(mask, _rect_mask())


def test_mask_from_image_threshold_and_paths(tmp_path):
    values = np.array([[0, 100, 200]], dtype=np.uint8)
    path = tmp_path / "mask.png"
    path.write_bytes(_png(Image.fromarray(values, "L")))
    np.testing.assert_array_equal(mask_from_image(path), [[False, False, True]])
    np.testing.assert_array_equal(mask_from_image(str(path), threshold=50), [[False, True, True]])


def test_mask_from_image_rejects_garbage():
    with pytest.raises(InvalidImageError) as info:
        mask_from_image(b"not an image at all")
    assert info.value.field == "mask"
    with pytest.raises(InvalidImageError) as info:
        mask_from_image(b"")
    assert "empty" in str(info.value)
    with pytest.raises(InputValidationError) as info:
        mask_from_image(_mask_png("L"), threshold=300)
    assert info.value.field == "threshold"


def test_mask_stats_known_rectangle():
    stats = mask_stats(_rect_mask())
    assert stats == MaskStats(area=200, box=(10, 5, 30, 15), centroid=(20.0, 10.0))


def test_mask_stats_asymmetric_and_empty():
    mask = np.zeros((4, 4), dtype=bool)
    mask[0, 0] = mask[0, 1] = mask[3, 1] = True
    stats = mask_stats(mask)
    assert stats.area == 3
    assert stats.box == (0, 0, 2, 4)
    assert stats.centroid == pytest.approx((0.5 + 2 / 3, 0.5 + 1.0))
    assert mask_stats(np.zeros((3, 3), dtype=bool)) == MaskStats(area=0, box=None, centroid=None)


def _photo() -> Image.Image:
    rng = np.random.default_rng(3)
    return Image.fromarray(rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8), "RGB")


def test_overlay_changes_only_masked_pixels():
    photo = _photo()
    mask = _rect_mask()
    out = overlay(_png(photo), [mask], alpha=0.5, outline=False)
    assert out.mode == "RGB" and out.size == (W, H)
    before, after = np.asarray(photo).astype(int), np.asarray(out).astype(int)
    np.testing.assert_array_equal(after[~mask], before[~mask])
    expected = np.rint(before[mask] * 0.5 + np.array(PALETTE[0]) * 0.5)
    np.testing.assert_array_equal(after[mask], expected)


def test_overlay_outline_and_distinct_colors():
    black = Image.new("RGB", (W, H))
    first = np.zeros((H, W), dtype=bool)
    first[2:8, 2:8] = True
    second = np.zeros((H, W), dtype=bool)
    second[20:28, 20:30] = True
    out = np.asarray(overlay(black, np.stack([first, second]), alpha=0.5, outline=True))
    assert tuple(out[2, 2]) == PALETTE[0]  # edge pixel: full colour
    assert tuple(out[4, 4]) == tuple(round(c * 0.5) for c in PALETTE[0])  # interior: blended
    assert tuple(out[20, 20]) == PALETTE[1]
    assert tuple(out[0, 0]) == (0, 0, 0)


def test_overlay_custom_colors_and_single_mask():
    out = np.asarray(overlay(Image.new("RGB", (W, H)), _rect_mask(), alpha=1.0, colors=[(1, 2, 3)]))
    assert tuple(out[10, 20]) == (1, 2, 3)
    with pytest.raises(InputValidationError) as info:
        overlay(Image.new("RGB", (W, H)), [_rect_mask()], colors=[(1, 2)])
    assert info.value.field == "colors[0]"
    with pytest.raises(InputValidationError) as info:
        overlay(Image.new("RGB", (W, H)), [_rect_mask()], alpha=1.5)
    assert info.value.field == "alpha"


def test_overlay_size_mismatch_names_the_mask():
    wrong = np.zeros((H, W + 1), dtype=bool)
    with pytest.raises(InputValidationError) as info:
        overlay(_photo(), [_rect_mask(), wrong])
    assert info.value.field == "masks[1]"
    assert f"{W + 1}x{H}" in str(info.value) and f"{W}x{H}" in str(info.value)


def test_cutout_alpha_is_mask_and_crop_is_box(tmp_path):
    photo = _photo()
    path = tmp_path / "photo.png"
    path.write_bytes(_png(photo))
    mask = _rect_mask()
    mask[6, 12] = False

    full = cutout(path, mask, crop=False)
    assert full.mode == "RGBA" and full.size == (W, H)
    np.testing.assert_array_equal(np.asarray(full)[..., 3], mask.astype(np.uint8) * 255)
    np.testing.assert_array_equal(np.asarray(full)[..., :3], np.asarray(photo))

    cropped = cutout(photo, mask)
    assert cropped.size == (20, 10)
    np.testing.assert_array_equal(np.asarray(cropped)[..., 3], mask[5:15, 10:30].astype(np.uint8) * 255)
    np.testing.assert_array_equal(np.asarray(cropped)[..., :3], np.asarray(photo)[5:15, 10:30])

    empty = cutout(photo, np.zeros((H, W), dtype=bool))
    assert empty.size == (W, H)
    assert not np.asarray(empty)[..., 3].any()

    with pytest.raises(InputValidationError) as info:
        cutout(photo, np.zeros((H + 1, W), dtype=bool))
    assert info.value.field == "mask"


def test_mask_to_png_and_encode_png():
    data = mask_to_png(_rect_mask())
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.mode == "L"
    assert set(np.unique(np.asarray(image))) == {0, 255}
    np.testing.assert_array_equal(mask_from_image(data), _rect_mask())
    assert Image.open(io.BytesIO(encode_png(_photo()))).size == (W, H)
    with pytest.raises(InputValidationError):
        encode_png(b"bytes")  # type: ignore[arg-type]


def test_overlay_and_cutout_turn_an_exif_rotated_photo_upright_as_it_was_sent_to_fal():
    from airflow_provider_sam3.media.inputs import prepare_image

    stored = np.zeros((20, 40, 3), dtype=np.uint8)  # stored 40 wide, 20 high; its left quarter is red
    stored[:, :10] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise: 20 wide, 40 high, the red part on top
    buffer = io.BytesIO()
    Image.fromarray(stored, "RGB").save(buffer, format="JPEG", exif=exif.tobytes(), quality=95)
    photo = buffer.getvalue()
    sent = prepare_image(photo)
    assert (sent.width, sent.height) == (20, 40)
    top = np.zeros((40, 20), dtype=bool)  # a mask fal would return for the red part of what it was sent
    top[:10] = True

    tinted = np.asarray(overlay(photo, top, alpha=1.0, colors=[(0, 0, 255)], outline=False))
    assert tinted.shape == (40, 20, 3)
    assert tinted[:10].reshape(-1, 3).tolist() == [[0, 0, 255]] * 200
    assert (tinted[12:, :, 0] < 60).all()  # below the mask the photo shows through, and it is not red
    piece = cutout(photo, top)
    assert piece.size == (20, 10)
    red, green, blue, alpha = (np.asarray(piece)[..., i] for i in range(4))
    assert (alpha == 255).all() and (red > 200).all() and (green < 60).all()


def test_overlay_tags_each_mask_with_its_label_and_score_in_its_colour():
    """A tag ("cup 0.93") sits above each mask's box, filled with the mask's colour; untagged pixels stay as the
    untagged overlay draws them."""
    big = Image.new("RGB", (400, 300), (0, 0, 0))
    first = np.zeros((300, 400), dtype=bool)
    first[120:200, 40:160] = True
    second = np.zeros((300, 400), dtype=bool)
    second[150:260, 220:380] = True
    plain = np.asarray(overlay(big, [first, second]))
    tagged = np.asarray(overlay(big, [first, second], labels=["cup", "saucer"], scores=[0.93, None]))
    changed = np.any(tagged != plain, axis=2)
    assert changed[:120, 40:160].any() and changed[:150, 220:380].any()  # a tag above each mask
    assert not changed[270:, :].any()  # nothing drawn far from the masks
    above_first = tagged[:120, 40:160].reshape(-1, 3)
    assert (above_first == PALETTE[0]).all(axis=1).sum() > 100  # the first tag's fill is the first mask's colour
    with pytest.raises(InputValidationError) as info:
        overlay(big, [first, second], labels=["only one"])
    assert info.value.field == "labels"


def test_contact_sheet_lays_pictures_out_in_columns_with_captions():
    from airflow_provider_sam3.media.render import contact_sheet

    pictures = [Image.new("RGB", (200, 100), color) for color in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    sheet = contact_sheet(pictures, columns=2, thumb=100, captions=["red", "green", "blue"])
    gap = 4
    assert sheet.size == (2 * (100 + gap) + gap, 2 * (100 + 10 + gap) + gap)
    pixels = np.asarray(sheet)
    assert tuple(pixels[gap + 50, gap + 50]) == (255, 0, 0)  # first cell, scaled to 100 x 50, centred
    assert tuple(pixels[gap + 50, gap + 104 + 50]) == (0, 255, 0)  # second column
    assert tuple(pixels[gap + 114 + 50, gap + 50]) == (0, 0, 255)  # second row
    for bad, field in (({"columns": 0}, "columns"), ({"thumb": True}, "thumb"), ({"captions": ["x"]}, "captions")):
        with pytest.raises(InputValidationError) as info:
            contact_sheet(pictures, **bad)
        assert info.value.field == field
