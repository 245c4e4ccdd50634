"""The RLE parser's fast path (numpy's C text parser for canonical strings) gives what the strict path gives."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_sam3.exceptions import InputValidationError
from airflow_provider_sam3.media.rle import parse_canonical_counts, parse_counts, rle_decode

INT64_MAX = np.iinfo(np.int64).max


def strict(rle: str) -> np.ndarray:
    return np.array(rle.split(), dtype=np.int64)


tokens = st.one_of(
    st.integers(0, 10**6).map(str),
    st.integers(0, INT64_MAX).map(str),
    st.sampled_from(["0", "007", str(INT64_MAX - 1), str(INT64_MAX)]),
)
separators = st.sampled_from([" ", " ", " ", "  ", "\n", "\t", " \r\n"])


@given(st.lists(tokens, min_size=1, max_size=20), separators, st.booleans())
@settings(max_examples=500, deadline=None)
def test_fast_path_reads_exactly_what_the_strict_path_reads(items, separator, padded):
    rle = separator.join(items)
    if padded:
        rle = f" {rle} "
    fast = parse_canonical_counts(rle)
    if fast is not None:
        np.testing.assert_array_equal(fast, strict(rle))
    np.testing.assert_array_equal(parse_counts(rle, "rle"), strict(rle))


def test_fast_path_takes_canonical_strings_only():
    assert parse_canonical_counts("1 5 10 3") is not None
    for other in ["", " ", " 1 5", "1 5 ", "1  5", "1\n5", "+1 5", "1_0 5", "\u0663 5", "1e3", "-1 5"]:
        assert parse_canonical_counts(other) is None, other


@pytest.mark.parametrize("rle", ["9223372036854775808 1", "1 99999999999999999999", str(INT64_MAX)])
def test_values_at_the_int64_limit_go_to_the_strict_path(rle):
    assert parse_canonical_counts(rle) is None  # numpy's text parser would clamp them silently


def test_too_large_tokens_are_still_named():
    with pytest.raises(InputValidationError, match="too large"):
        rle_decode("1 99999999999999999999", 4, 4)
