"""fal's run-length encoding of binary masks.

One string of whitespace-separated integers forming ``start length`` pairs (Kaggle style): pixels are flattened
row-major (C order), ``start`` is 1-based, runs ascend and do not overlap, and the string carries no dimensions
(the caller takes width and height from the image). An empty mask is the empty string. Runs of length 0 are
rejected: fal never writes them, so one means the string is not what this codec expects.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from airflow_provider_sam3.exceptions import InputValidationError

__all__ = [
    "parse_canonical_counts",
    "parse_counts",
    "rle_area",
    "rle_box",
    "rle_decode",
    "rle_decode_many",
    "rle_encode",
    "rle_runs",
]

_FORMAT = "whitespace-separated 'start length' integer pairs, start 1-based, runs ascending and non-overlapping"


def _check_size(width: int, height: int) -> int:
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InputValidationError(name, f"must be a positive integer number of pixels, got {value!r}.")
    return int(width) * int(height)


_INT64_MAX = np.iinfo(np.int64).max


def parse_canonical_counts(rle: str) -> np.ndarray | None:
    """Fast path for the form fal and ``rle_encode`` write: ASCII digits separated by single spaces.

    Returns ``None`` for anything else, and whenever it cannot be sure it read every token exactly (a value at or
    past int64's limit, which numpy's text parser would clamp); ``parse_counts`` then decides, as it always did.
    """
    if not rle.isascii():
        return None
    raw = rle.encode("ascii")
    if not raw.translate(None, b" ").isdigit() or b"  " in raw or raw.startswith(b" ") or raw.endswith(b" "):
        return None
    values = np.fromstring(raw, dtype=np.int64, sep=" ")  # text mode: C parsing, ~3x faster than int() per token
    if values.size != raw.count(b" ") + 1 or values.max() >= _INT64_MAX:
        return None
    return values


def parse_counts(rle: str, field: str) -> np.ndarray:
    values = parse_canonical_counts(rle)
    if values is not None:
        return values
    tokens = rle.split()
    try:
        return np.array(tokens, dtype=np.int64)
    except (ValueError, OverflowError):
        pass
    for index, token in enumerate(tokens):
        try:
            value = int(token)
        except ValueError:
            raise InputValidationError(
                field, f"token {index} ({token[:20]!r}) is not an integer.", allowed=_FORMAT
            ) from None
        if not -(2**63) <= value < 2**63:
            raise InputValidationError(field, f"token {index} ({token[:20]!r}) is too large.", allowed=_FORMAT)
    raise InputValidationError(field, "could not be parsed as integers.", allowed=_FORMAT)


def _first(bad: np.ndarray) -> int:
    return int(np.flatnonzero(bad)[0])


def rle_runs(rle: str, width: int, height: int, *, field: str = "rle") -> tuple[np.ndarray, np.ndarray]:
    """The 0-based starts and the lengths of one RLE string's runs, checked against a ``width`` x ``height`` image
    (1-based starts, lengths >= 1, ascending, inside the image) without decoding the mask."""
    total = _check_size(width, height)
    if not isinstance(rle, str):
        raise InputValidationError(field, f"must be a string, got {type(rle).__name__}.", allowed=_FORMAT)
    values = parse_counts(rle, field)
    if values.size % 2:
        raise InputValidationError(
            field, f"has {values.size} integers, an odd number, so the last run has no length.", allowed=_FORMAT
        )
    starts = values[0::2] - 1
    lengths = values[1::2]
    if (starts < 0).any():
        i = _first(starts < 0)
        raise InputValidationError(field, f"run {i} starts at {starts[i] + 1}; starts are 1-based.", allowed=_FORMAT)
    if (lengths < 1).any():
        i = _first(lengths < 1)
        raise InputValidationError(field, f"run {i} has length {lengths[i]}; lengths must be >= 1.", allowed=_FORMAT)
    past_end = lengths > total - starts
    if past_end.any():
        i = _first(past_end)
        raise InputValidationError(
            field,
            f"run {i} ({starts[i] + 1} {lengths[i]}) ends past the last pixel {total} of a {width}x{height} image; "
            "check that width and height are the image's.",
            allowed=_FORMAT,
        )
    ends = starts + lengths
    if starts.size > 1 and (starts[1:] < ends[:-1]).any():
        i = _first(starts[1:] < ends[:-1]) + 1
        raise InputValidationError(
            field,
            f"run {i} starts at pixel {starts[i] + 1}, but run {i - 1} covers pixels {starts[i - 1] + 1} to "
            f"{ends[i - 1]}; runs must ascend without overlapping.",
            allowed=_FORMAT,
        )
    return starts, lengths


def rle_area(rle: str, width: int, height: int, *, field: str = "rle") -> int:
    """Pixels set by one RLE string (its runs checked against the image, the mask not decoded)."""
    return int(rle_runs(rle, width, height, field=field)[1].sum())


def rle_box(rle: str, width: int, height: int, *, field: str = "rle") -> tuple[float, float, float, float] | None:
    """Tight pixel box (maxima exclusive) of an RLE mask from its checked runs alone; a run that wraps a row spans
    all columns. ``None`` for an empty mask."""
    starts, lengths = rle_runs(rle, width, height, field=field)
    if not starts.size:
        return None
    lasts = starts + lengths - 1
    first_rows, last_rows = starts // width, lasts // width
    wraps = first_rows != last_rows
    x_min = 0 if wraps.any() else int((starts % width).min())
    x_max = width if wraps.any() else int((lasts % width).max()) + 1
    return (float(x_min), float(first_rows.min()), float(x_max), float(last_rows.max()) + 1)


def rle_decode(rle: str, width: int, height: int, *, field: str = "rle") -> np.ndarray:
    """Decode one RLE string into a boolean mask of shape ``(height, width)``."""
    total = _check_size(width, height)
    starts, lengths = rle_runs(rle, width, height, field=field)
    ends = starts + lengths
    # The flat mask alternates gaps and runs: gap, run 0, gap, run 1, ..., run n-1, tail. np.repeat writes each
    # stretch in one pass (a cumulative sum over every pixel made decoding about 10x slower; bench/codec.py).
    stretches = np.empty(2 * starts.size + 1, dtype=np.int64)
    stretches[0] = starts[0] if starts.size else total
    stretches[1::2] = lengths
    stretches[2:-1:2] = starts[1:] - ends[:-1]
    if starts.size:
        stretches[-1] = total - ends[-1]
    values = np.zeros(stretches.size, dtype=bool)
    values[1::2] = True
    return np.repeat(values, stretches).reshape(int(height), int(width))


def rle_encode(mask: np.ndarray, *, field: str = "mask") -> str:
    """Encode a 2-D mask (bool, or nonzero = set) as fal's RLE string."""
    array = np.asarray(mask)
    if array.ndim != 2:
        raise InputValidationError(field, f"must be a 2-D (height, width) array, got shape {array.shape}.")
    flat = array.astype(bool, copy=False).ravel(order="C")  # no copy of a C-ordered bool mask
    if flat.size == 0:
        return ""
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1  # pixels whose value differs from the previous one
    if flat[0]:
        changes = np.concatenate(([0], changes))
    if flat[-1]:
        changes = np.concatenate((changes, [flat.size]))
    starts, ends = changes[0::2], changes[1::2]
    pairs = np.column_stack((starts + 1, ends - starts)).ravel()
    return " ".join(map(str, pairs.tolist()))


def rle_decode_many(rles: str | Sequence[str], width: int, height: int) -> list[np.ndarray]:
    """Decode image-rle's ``rle`` output, which is one string or a list of strings, into a list of masks."""
    if isinstance(rles, str):
        return [rle_decode(rles, width, height)]
    if not isinstance(rles, Sequence):
        raise InputValidationError("rle", f"must be a string or a list of strings, got {type(rles).__name__}.")
    return [rle_decode(rle, width, height, field=f"rle[{i}]") for i, rle in enumerate(rles)]
