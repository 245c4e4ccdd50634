from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_sam3.exceptions import InputValidationError
from airflow_provider_sam3.media.boxes import cxcywh_to_xyxy, mask_box, xyxy_to_cxcywh

coords = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)
sizes = st.integers(1, 10_000)


@given(coords, coords, st.floats(0, 1e4), st.floats(0, 1e4), sizes, sizes)
def test_xyxy_round_trip(x0, y0, dw, dh, width, height):
    box = (x0, y0, x0 + dw, y0 + dh)
    back = cxcywh_to_xyxy(xyxy_to_cxcywh(box, width, height), width, height)
    tolerance = 1e-9 * max(abs(v) for v in (*box, width, height))
    for got, want in zip(back, box):
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=tolerance)


def test_known_conversion_exclusive_max():
    # Columns 10..19 and rows 5..9 of a 40x20 image.
    assert xyxy_to_cxcywh((10, 5, 20, 10), 40, 20) == (15 / 40, 7.5 / 20, 10 / 40, 5 / 20)
    assert cxcywh_to_xyxy((0.5, 0.5, 1.0, 1.0), 40, 20) == (0.0, 0.0, 40.0, 20.0)


def test_mask_box_matches_normalized_box():
    mask = np.zeros((20, 40), dtype=bool)
    mask[5:10, 10:20] = True
    assert mask_box(mask) == (10, 5, 20, 10)
    cx, cy, w, h = xyxy_to_cxcywh(mask_box(mask), 40, 20)
    assert (w * 40, h * 20) == (10, 5)
    assert cxcywh_to_xyxy((cx, cy, w, h), 40, 20) == pytest.approx((10, 5, 20, 10))


@given(st.integers(1, 30), st.integers(1, 30), st.data())
def test_mask_box_is_tight(height, width, data):
    y0 = data.draw(st.integers(0, height - 1))
    x0 = data.draw(st.integers(0, width - 1))
    y1 = data.draw(st.integers(y0 + 1, height))
    x1 = data.draw(st.integers(x0 + 1, width))
    mask = np.zeros((height, width), dtype=bool)
    mask[y0, x0] = mask[y1 - 1, x1 - 1] = True
    assert mask_box(mask) == (x0, y0, x1, y1)


def test_mask_box_single_pixel_and_empty():
    mask = np.zeros((3, 3), dtype=bool)
    assert mask_box(mask) is None
    mask[2, 2] = True
    assert mask_box(mask) == (2, 2, 3, 3)


def test_none_passthrough():
    assert cxcywh_to_xyxy(None, 10, 10) is None
    assert xyxy_to_cxcywh(None, 10, 10) is None


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: cxcywh_to_xyxy((0.5, 0.5, 0.1), 10, 10), "box"),
        (lambda: cxcywh_to_xyxy((0.5, 0.5, 0.1, 0.1, 0.0), 10, 10), "box"),
        (lambda: cxcywh_to_xyxy(("a", 0.5, 0.1, 0.1), 10, 10), "box"),
        (lambda: cxcywh_to_xyxy((0.5, 0.5, -0.1, 0.1), 10, 10), "box"),
        (lambda: cxcywh_to_xyxy((0.5, 0.5, float("nan"), 0.1), 10, 10), "box"),
        (lambda: cxcywh_to_xyxy((0.5, 0.5, 0.1, 0.1), 0, 10), "width"),
        (lambda: xyxy_to_cxcywh((0, 0, 1, 1), 10, -1), "height"),
        (lambda: xyxy_to_cxcywh((5, 0, 1, 1), 10, 10), "box"),
        (lambda: mask_box(np.zeros(3)), "mask"),
    ],
)
def test_invalid_input(call, field):
    with pytest.raises(InputValidationError) as info:
        call()
    assert info.value.field == field
