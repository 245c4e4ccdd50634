"""fal's ``embedding_b64``: base64 bytes whose layout fal does not document, so only the caller may name it."""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from airflow_provider_sam3.exceptions import InputValidationError
from airflow_provider_sam3.media._b64 import TOLERANT_BASE64, tolerant_b64decode

__all__ = ["embedding_array", "embedding_bytes", "encode_embedding"]

_FIELD = "embedding_b64"


def embedding_bytes(embedding_b64: str) -> bytes:
    """The raw bytes of a base64 embedding; line breaks, missing padding and URL-safe characters are tolerated,
    since the text comes from fal after the request was paid for."""
    if not isinstance(embedding_b64, (str, bytes)):
        raise InputValidationError(_FIELD, f"must be a base64 string, got {type(embedding_b64).__name__}.")
    if not embedding_b64:
        raise InputValidationError(_FIELD, "is empty; expected the base64 text fal returned.")
    try:
        return tolerant_b64decode(embedding_b64)
    except ValueError as exc:
        raise InputValidationError(_FIELD, f"is not valid base64 ({exc}).", allowed=TOLERANT_BASE64) from None


def _shape(shape: int | Sequence[int]) -> tuple[int, ...]:
    try:
        dims: tuple[Any, ...] = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    except TypeError:
        dims = (shape,)
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in dims):
        raise InputValidationError("shape", f"must be non-negative integers, got {shape!r}.")
    return tuple(int(d) for d in dims)


def embedding_array(embedding_b64: str, *, dtype: npt.DTypeLike, shape: int | Sequence[int]) -> np.ndarray:
    """Decode an embedding as an array of the ``dtype`` and ``shape`` the caller knows it has.

    ``dtype`` may carry a byte order (``"<f4"``). The byte count must match exactly; nothing is guessed.
    """
    try:
        kind = np.dtype(dtype)
    except (TypeError, ValueError) as exc:
        raise InputValidationError("dtype", f"{dtype!r} is not a numpy dtype ({exc}).") from None
    if kind.hasobject or kind.itemsize == 0:
        raise InputValidationError("dtype", f"{kind} cannot be read from raw bytes; give a numeric dtype like '<f4'.")
    dims = _shape(shape)
    data = embedding_bytes(embedding_b64)
    needed = math.prod(dims) * kind.itemsize
    if len(data) != needed:
        raise InputValidationError(
            _FIELD,
            f"decodes to {len(data)} bytes, but dtype {kind.str} with shape {dims} needs {needed} bytes "
            f"({math.prod(dims)} items x {kind.itemsize} bytes); check the dtype and shape.",
        )
    return np.frombuffer(bytearray(data), dtype=kind).reshape(dims)


def encode_embedding(array: npt.ArrayLike) -> str:
    """Base64 of the array's C-order bytes, the inverse of :func:`embedding_array`."""
    values = np.asarray(array)
    if values.dtype.hasobject:
        raise InputValidationError("array", "holds Python objects; give a numeric array.")
    return base64.b64encode(values.tobytes(order="C")).decode("ascii")
