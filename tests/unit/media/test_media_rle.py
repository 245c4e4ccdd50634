from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from airflow_provider_sam3.exceptions import InputValidationError
from airflow_provider_sam3.media.rle import rle_decode, rle_decode_many, rle_encode


@st.composite
def masks(draw):
    height = draw(st.integers(1, 64))
    width = draw(st.integers(1, 64))
    return draw(arrays(np.bool_, (height, width)))


@given(masks())
@settings(max_examples=300, deadline=None)
def test_round_trip(mask):
    encoded = rle_encode(mask)
    decoded = rle_decode(encoded, mask.shape[1], mask.shape[0])
    assert decoded.dtype == np.bool_
    assert decoded.shape == mask.shape
    np.testing.assert_array_equal(decoded, mask)


@given(masks())
@settings(max_examples=100, deadline=None)
def test_encoding_is_canonical(mask):
    values = [int(v) for v in rle_encode(mask).split()]
    starts, lengths = values[0::2], values[1::2]
    assert all(length >= 1 for length in lengths)
    assert all(s >= 1 for s in starts)
    ends = [s + n for s, n in zip(starts, lengths)]
    assert all(nxt > end for end, nxt in zip(ends, starts[1:])), "adjacent runs must be merged"
    assert sum(lengths) == int(mask.sum())


def spec_decode(rle: str, width: int, height: int) -> np.ndarray:
    """fal's format as documented, one run at a time: zeros(H*W); m[s-1 : s-1+l] = 1; reshape (H, W)."""
    flat = np.zeros(width * height, dtype=bool)
    values = [int(v) for v in rle.split()]
    for start, length in zip(values[0::2], values[1::2]):
        flat[start - 1 : start - 1 + length] = True
    return flat.reshape(height, width)


@st.composite
def fal_strings(draw):
    """Ascending, non-overlapping 1-based runs as fal writes them, free to cross row ends, over a random size."""
    width, height = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    cuts = sorted(draw(st.sets(st.integers(1, width * height + 1), max_size=20)))
    pairs = [(start, end - start) for start, end in zip(cuts[0::2], cuts[1::2])]
    return " ".join(f"{s} {n}" for s, n in pairs), width, height


@given(fal_strings())
@settings(max_examples=300, deadline=None)
def test_decode_matches_the_documented_format_run_by_run(case):
    rle, width, height = case
    np.testing.assert_array_equal(rle_decode(rle, width, height), spec_decode(rle, width, height))


def test_known_fal_string_4x3():
    # 4 wide, 3 high, flat 1-based indices: row 0 = 1..4, row 1 = 5..8, row 2 = 9..12.
    # "2 3" sets 2, 3, 4 -> row 0 cols 1-3; "9 2" sets 9, 10 -> row 2 cols 0-1.
    expected = np.array(
        [
            [0, 1, 1, 1],
            [0, 0, 0, 0],
            [1, 1, 0, 0],
        ],
        dtype=bool,
    )
    np.testing.assert_array_equal(rle_decode("2 3 9 2", 4, 3), expected)
    assert rle_encode(expected) == "2 3 9 2"


def test_start_is_one_based():
    mask = rle_decode("1 1", 3, 2)
    expected = np.zeros((2, 3), dtype=bool)
    expected[0, 0] = True
    np.testing.assert_array_equal(mask, expected)


def test_run_wraps_rows_row_major():
    mask = rle_decode("3 3", 4, 2)
    np.testing.assert_array_equal(mask, np.array([[0, 0, 1, 1], [1, 0, 0, 0]], dtype=bool))


def test_whitespace_and_touching_runs():
    mask = rle_decode(" 1 2\n3\t1 ", 2, 2)
    np.testing.assert_array_equal(mask, np.array([[1, 1], [1, 0]], dtype=bool))


def test_empty_full_and_single_pixels():
    empty = np.zeros((5, 7), dtype=bool)
    assert rle_encode(empty) == ""
    np.testing.assert_array_equal(rle_decode("", 7, 5), empty)
    np.testing.assert_array_equal(rle_decode("   ", 7, 5), empty)

    full = np.ones((5, 7), dtype=bool)
    assert rle_encode(full) == "1 35"
    np.testing.assert_array_equal(rle_decode("1 35", 7, 5), full)

    first = empty.copy()
    first[0, 0] = True
    assert rle_encode(first) == "1 1"
    last = empty.copy()
    last[-1, -1] = True
    assert rle_encode(last) == "35 1"
    np.testing.assert_array_equal(rle_decode("35 1", 7, 5), last)


def test_encode_accepts_zero_one_integers():
    assert rle_encode(np.array([[0, 1], [1, 1]], dtype=np.uint8)) == "2 3"


def test_large_mask_round_trip():
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:1024, 0:1024]
    mask = np.zeros((1024, 1024), dtype=bool)
    for cx, cy, r in rng.integers([0, 0, 5], [1024, 1024, 120], size=(40, 3)):
        mask |= (xx - cx) ** 2 + (yy - cy) ** 2 < r**2
    mask ^= rng.random((1024, 1024)) < 0.001
    encoded = rle_encode(mask)
    np.testing.assert_array_equal(rle_decode(encoded, 1024, 1024), mask)


def test_decode_many():
    masks_ = rle_decode_many(["1 1", "", "4 1"], 2, 2)
    assert [m.sum() for m in masks_] == [1, 0, 1]
    assert masks_[2][1, 1]
    single = rle_decode_many("1 4", 2, 2)
    assert len(single) == 1 and single[0].all()


def test_decode_many_names_the_item():
    with pytest.raises(InputValidationError) as info:
        rle_decode_many(["1 1", "1"], 2, 2)
    assert info.value.field == "rle[1]"


@pytest.mark.parametrize(
    ("rle", "needle"),
    [
        ("1 2 3", "odd number"),
        ("1 x", "token 1 ('x') is not an integer"),
        ("1.5 2", "token 0"),
        ("0 1", "run 0 starts at 0"),
        ("-2 1", "run 0 starts at -2"),
        ("1 1 3 0", "run 1 has length 0"),
        ("1 -1", "run 0 has length -1"),
        ("11 3", "run 0 (11 3) ends past the last pixel 12"),
        ("13 1", "ends past"),
        ("9223372036854775807 1", "ends past"),
        ("1 9223372036854775807", "ends past"),
        ("99999999999999999999 1", "too large"),
        ("5 2 3 1", "run 1 starts at pixel 3"),
        ("1 3 2 1", "run 1 starts at pixel 2, but run 0 covers pixels 1 to 3"),
    ],
)
def test_malformed_strings_rejected(rle, needle):
    with pytest.raises(InputValidationError) as info:
        rle_decode(rle, 4, 3)
    assert info.value.field == "rle"
    assert needle in str(info.value)
    assert str(info.value).startswith("rle: ")


def test_non_string_and_bad_size_rejected():
    with pytest.raises(InputValidationError) as info:
        rle_decode([1, 1], 2, 2)  # type: ignore[arg-type]
    assert info.value.field == "rle"
    with pytest.raises(InputValidationError) as info:
        rle_decode("1 1", 0, 2)
    assert info.value.field == "width"
    with pytest.raises(InputValidationError) as info:
        rle_encode(np.zeros(4, dtype=bool))
    assert info.value.field == "mask"
