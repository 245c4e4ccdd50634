"""The classical segmenter standing in for SAM 3: finds obvious objects, deterministically (no network)."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from emulator_helpers import box_mask, iou, squares_image
from PIL import Image

from airflow_provider_sam3.testing.emulator.pixels import label_components
from airflow_provider_sam3.testing.emulator.segmenter import BoxSpec, PointSpec, segment

WIDTH, HEIGHT = 400, 300
SQUARE = (120, 90, 260, 210)


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return squares_image(WIDTH, HEIGHT, [SQUARE])


@pytest.fixture(scope="module")
def truth() -> np.ndarray:
    return box_mask(WIDTH, HEIGHT, SQUARE)


def test_text_prompt_finds_the_square_at_input_size(photo, truth):
    [found] = segment(photo, prompt="wheel")
    assert found.mask.shape == (HEIGHT, WIDTH)
    assert iou(found.mask, truth) > 0.9
    assert 0 < found.score < 1


def test_point_inside_grows_the_square(photo, truth):
    [found] = segment(photo, points=[PointSpec(190, 150, 1)])
    assert iou(found.mask, truth) > 0.9


def test_point_on_background_grows_the_background(photo, truth):
    [found] = segment(photo, points=[PointSpec(5, 5, 1)])
    assert iou(found.mask, ~truth) > 0.9


def test_negative_point_cuts_its_region_out(photo):
    assert segment(photo, points=[PointSpec(190, 150, 1), PointSpec(200, 160, 0)]) == []


def test_box_around_the_square_gives_the_square(photo, truth):
    [found] = segment(photo, boxes=[BoxSpec(100, 70, 290, 240)])
    assert iou(found.mask, truth) > 0.9
    assert not found.mask[:60].any()


def test_box_over_uniform_content_gives_the_whole_box(photo):
    [found] = segment(photo, boxes=[BoxSpec(150, 120, 200, 180)])
    assert iou(found.mask, box_mask(WIDTH, HEIGHT, (150, 120, 200, 180))) > 0.9


def test_boxes_without_object_id_are_separate_objects_and_geometry_wins_over_text(photo):
    found = segment(photo, prompt="wheel", boxes=[BoxSpec(100, 70, 290, 240), BoxSpec(0, 0, 50, 50)], max_masks=5)
    assert len(found) == 2


def test_same_input_same_masks(photo):
    first = segment(photo, prompt="x", points=[PointSpec(5, 5, 0)], max_masks=3)
    second = segment(photo.copy(), prompt="x", points=[PointSpec(5, 5, 0)], max_masks=3)
    assert [s.score for s in first] == [s.score for s in second]
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(first, second, strict=True))


def test_several_objects_ranked_by_area_and_capped():
    image = squares_image(300, 200, [(10, 10, 60, 60), (100, 40, 250, 180), (270, 10, 290, 30)])
    found = segment(image, prompt="thing", max_masks=2)
    assert len(found) == 2
    assert found[0].mask.sum() > found[1].mask.sum()
    assert iou(found[0].mask, box_mask(300, 200, (100, 40, 250, 180))) > 0.9
    assert len(segment(image, prompt="thing", max_masks=10)) == 3


def test_uniform_image_and_empty_prompt_find_nothing(photo):
    assert segment(Image.new("RGB", (64, 48), (128, 128, 128)), prompt="wheel") == []
    assert segment(photo, prompt="  ") == []


def test_colour_object_found_by_saturation():
    image = squares_image(120, 120, [(30, 30, 90, 90)], color=(200, 40, 40), background=(110, 110, 110))
    [found] = segment(image, prompt="red thing")
    assert iou(found.mask, box_mask(120, 120, (30, 30, 90, 90))) > 0.9


def _reference_labels(mask: np.ndarray) -> tuple[np.ndarray, int]:
    height, width = mask.shape
    labels = np.zeros(mask.shape, dtype=int)
    count = 0
    for row in range(height):
        for col in range(width):
            if mask[row, col] and not labels[row, col]:
                count += 1
                labels[row, col] = count
                todo = deque([(row, col)])
                while todo:
                    y, x = todo.popleft()
                    for yy, xx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                        if 0 <= yy < height and 0 <= xx < width and mask[yy, xx] and not labels[yy, xx]:
                            labels[yy, xx] = count
                            todo.append((yy, xx))
    return labels, count


def test_label_components_matches_a_flood_fill_reference():
    rng = np.random.default_rng(7)
    for _ in range(150):
        height, width = rng.integers(1, 25, size=2)
        mask = rng.random((height, width)) < rng.random()
        labels, count = label_components(mask)
        expected, expected_count = _reference_labels(mask)
        assert count == expected_count
        assert np.array_equal(labels, expected)


def test_label_components_handles_winding_shapes():
    mask = np.zeros((41, 41), dtype=bool)
    mask[::4, 1:] = True
    mask[2::8, 0] = True
    mask[::8, 40] = True
    mask[1::4, 0] = mask[2::4, 0] = mask[3::4, 0] = False
    for row in range(0, 40, 4):
        mask[row : row + 5, 40 if (row // 4) % 2 == 0 else 1] = True
    labels, count = label_components(mask)
    expected, expected_count = _reference_labels(mask)
    assert count == expected_count == 1
    assert np.array_equal(labels, expected)
