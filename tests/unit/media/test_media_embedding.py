from __future__ import annotations

import base64

import numpy as np
import pytest

from airflow_provider_sam3.exceptions import InputValidationError
from airflow_provider_sam3.media.embedding import embedding_array, embedding_bytes, encode_embedding


@pytest.mark.parametrize("dtype", ["<f4", ">f4", "<f2", "<i8", "u1"])
def test_round_trip(dtype):
    array = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    encoded = encode_embedding(array)
    decoded = embedding_array(encoded, dtype=dtype, shape=(2, 3, 4))
    assert decoded.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(decoded, array)
    decoded[0, 0, 0] = 1  # writable


def test_byte_order_matters():
    encoded = encode_embedding(np.array([1.0], dtype="<f4"))
    assert embedding_array(encoded, dtype="<f4", shape=1)[0] == 1.0
    assert embedding_array(encoded, dtype=">f4", shape=1)[0] != 1.0


def test_bytes_are_raw_array_bytes():
    array = np.array([[1, 2], [3, 4]], dtype="<i2")
    assert embedding_bytes(encode_embedding(array)) == array.tobytes()
    assert embedding_bytes(encode_embedding(np.asfortranarray(array))) == array.tobytes()


def test_wrong_byte_count_names_the_counts():
    encoded = base64.b64encode(bytes(12)).decode()
    with pytest.raises(InputValidationError) as info:
        embedding_array(encoded, dtype="<f4", shape=(2, 2))
    message = str(info.value)
    assert info.value.field == "embedding_b64"
    assert "12 bytes" in message and "16 bytes" in message and "<f4" in message


@pytest.mark.parametrize(
    "written, payload",
    [
        ("QUJD", b"ABC"),
        ("QU JD", b"ABC"),
        ("QUJD\n", b"ABC"),
        ("QUJD\nQUJD", b"ABCABC"),
        ("QUI", b"AB"),
        ("QUI=", b"AB"),
    ],
)
def test_base64_as_servers_write_it_is_accepted(written, payload):
    assert embedding_bytes(written) == payload


def test_url_safe_alphabet_is_accepted():
    payload = bytes([0xFB, 0xFF, 0xBF])
    assert embedding_bytes(base64.urlsafe_b64encode(payload).decode()) == payload


@pytest.mark.parametrize("garbage", ["not base64!!", "QUJDR", "QU@JD", "", "é"])
def test_garbage_rejected(garbage):
    with pytest.raises(InputValidationError) as info:
        embedding_bytes(garbage)
    assert info.value.field == "embedding_b64"


def test_bad_dtype_and_shape():
    encoded = encode_embedding(np.zeros(4, dtype="<f4"))
    with pytest.raises(InputValidationError) as info:
        embedding_array(encoded, dtype="float99", shape=4)
    assert info.value.field == "dtype"
    with pytest.raises(InputValidationError) as info:
        embedding_array(encoded, dtype=object, shape=4)
    assert info.value.field == "dtype"
    with pytest.raises(InputValidationError) as info:
        embedding_array(encoded, dtype="<f4", shape=(-1,))
    assert info.value.field == "shape"
    with pytest.raises(TypeError):
        embedding_array(encoded)  # type: ignore[call-arg]
