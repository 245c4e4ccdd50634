"""``list_images``: the public way for a DAG to list images as the batch does (examples use it, not the engine)."""

from __future__ import annotations

import pytest

from airflow_provider_sam3.exceptions import InputValidationError
from airflow_provider_sam3.operators.image_listing import list_images


def test_a_folder_is_listed_in_the_batchs_order_and_only_images(tmp_path):
    for name in ("b.png", "a.jpg", "notes.txt", "c.webp"):
        (tmp_path / name).write_bytes(b"x")
    assert list_images(str(tmp_path)) == [str(tmp_path / name) for name in ("a.jpg", "b.png", "c.webp")]


def test_an_unusable_item_is_refused_naming_the_field_and_its_position(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(InputValidationError, match=r"input_folder\[1\]"):
        list_images([str(tmp_path / "a.png"), 42], field_name="input_folder")
    with pytest.raises(InputValidationError, match=r"input_folder: '.*nowhere' does not exist"):
        list_images(str(tmp_path / "nowhere"), field_name="input_folder")
