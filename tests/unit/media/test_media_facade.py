from __future__ import annotations

import subprocess
import sys

import pytest

import airflow_provider_sam3.media as media


def test_import_is_cheap():
    code = (
        "import sys; import airflow_provider_sam3.media as m; "
        "heavy = sorted(n for n in sys.modules if n.split('.')[0] in ('numpy', 'PIL')); print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_lazy_names_resolve_to_submodules():
    from airflow_provider_sam3.media.inputs import prepare_image
    from airflow_provider_sam3.media.rle import rle_decode

    assert media.rle_decode is rle_decode
    assert media.prepare_image is prepare_image
    assert set(media.__all__) <= set(dir(media))
    for name in media.__all__:
        assert getattr(media, name) is not None
    with pytest.raises(AttributeError):
        media.no_such_thing  # noqa: B018
