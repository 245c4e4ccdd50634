"""What a batch's ``images`` lists, and how it is refused when it names nothing."""

from __future__ import annotations

import pytest

from airflow_provider_sam3.batch.listing import resolve_images
from airflow_provider_sam3.exceptions import InputValidationError


def test_a_missing_folder_is_called_missing_not_a_missing_file(tmp_path):
    with pytest.raises(InputValidationError) as raised:
        resolve_images(str(tmp_path / "photos"))
    assert raised.value.field == "images"
    assert "does not exist: no folder or file by that name on this worker" in str(raised.value)


def test_a_missing_image_file_is_called_a_missing_image_file(tmp_path):
    with pytest.raises(InputValidationError, match="no image file by that name"):
        resolve_images(str(tmp_path / "shoe.jpg"))


def test_a_missing_file_in_a_list_is_left_to_that_rows_check(tmp_path):
    """In a list, one missing file is that row's problem: it becomes an ``invalid`` row, not a refused batch."""
    present = tmp_path / "a.png"
    present.write_bytes(b"x")
    images = resolve_images([str(present), str(tmp_path / "gone.png")])
    assert [image.source for image in images] == [str(present), str(tmp_path / "gone.png")]
