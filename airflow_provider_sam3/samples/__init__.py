"""Photographs shipped with the provider, so a first DAG runs as written, offline against the emulator or on fal.

Each is a real photograph without copyright restrictions, copied from scikit-image's data folder (its docstrings
give the licences) and stored as a JPEG:

- ``coffee``: a coffee cup on a saucer, 600 x 400. scikit-image ``data.coffee``, courtesy of Pikolo Espresso Bar;
  CC0 by the photographer (Rachel Michetti).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["SAMPLE_PHOTOS", "sample_photo"]

SAMPLE_PHOTOS = {"coffee": "coffee.jpg"}
"""Sample name -> file in this package."""


def sample_photo(name: str) -> str:
    """The absolute path of a shipped sample photo (``coffee``), for an operator's ``image``."""
    if name not in SAMPLE_PHOTOS:
        from airflow_provider_sam3.exceptions import InputValidationError

        raise InputValidationError("name", f"{name!r} is not a shipped sample photo", allowed=", ".join(SAMPLE_PHOTOS))
    return str(Path(__file__).with_name(SAMPLE_PHOTOS[name]))
