"""DAG files import the operator and sensor modules on every parse: those imports must stay light.

Behaviour, not timing (bench/import_cost.py measures the time): which modules the DAG-facing imports load, and
that the lazy registry and the lazy ``models`` package give the same classes as eager imports would.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import airflow_provider_sam3.models as models
from airflow_provider_sam3.endpoints import ENDPOINTS, RegistryError, input_model_for, resolve_model
from airflow_provider_sam3.models.endpoint_table import INPUT_FIELDS

PACKAGE = Path(models.__file__).resolve().parents[1]
DAG_FACING = [
    "airflow_provider_sam3",
    "airflow_provider_sam3.endpoints",
    "airflow_provider_sam3.operators.queue",
    "airflow_provider_sam3.operators.sam3",
    "airflow_provider_sam3.sensors.fal",
    "airflow_provider_sam3.links",
    "airflow_provider_sam3.ui.plugin",  # workers load entry-point plugins for their macros
]
if (PACKAGE / "operators" / "batch.py").exists():  # the batch operator, when this checkout has it
    DAG_FACING.append("airflow_provider_sam3.operators.batch")
HEAVY = ["fal_client", "httpx", "PIL", "numpy", "fastapi"]
ENDPOINT_MODEL_MODULES = [f"airflow_provider_sam3.models.{name}" for name in ("image", "video", "three_d", "results")]

CHILD = """
import json, sys
watched = {watched!r}
import airflow.sdk
before = sorted(n for n in watched if n in sys.modules)
for name in {modules!r}:
    __import__(name)
after = sorted(n for n in watched if n in sys.modules)
print(json.dumps(dict(before=before, after=after)))
"""


def _loaded_by_dag_imports() -> tuple[set[str], set[str]]:
    code = CHILD.format(watched=HEAVY + ENDPOINT_MODEL_MODULES, modules=DAG_FACING)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return set(result["before"]), set(result["after"])


def test_dag_facing_imports_load_no_heavy_library_and_no_endpoint_model():
    before, after = _loaded_by_dag_imports()
    added = after - before
    # httpx is already imported by `import airflow.sdk` itself; the provider must not add any of these.
    assert not added & set(HEAVY), f"the DAG-facing modules import {sorted(added & set(HEAVY))}"
    assert not {"fal_client", "PIL", "numpy"} & after
    # The pydantic endpoint models are built on first validation, not when a DAG file is parsed.
    assert not added & set(ENDPOINT_MODEL_MODULES), f"parse-time model imports: {sorted(added)}"


@pytest.mark.parametrize("endpoint_id", sorted(ENDPOINTS))
def test_registry_field_names_match_the_models(endpoint_id):
    endpoint = ENDPOINTS[endpoint_id]
    assert endpoint.input_fields == tuple(endpoint.input_model.model_fields)
    assert endpoint.takes_image == ("image_url" in endpoint.input_model.model_fields)
    assert endpoint.output_model.__name__ == endpoint.output_ref.split(":")[1]


def test_every_listed_input_model_is_used_and_checked():
    assert set(INPUT_FIELDS) == {e.input_ref for e in ENDPOINTS.values()}


def test_a_stale_field_list_is_a_loud_error():
    endpoint = ENDPOINTS["fal-ai/sam-3/image"]
    with pytest.raises(RegistryError, match="update INPUT_FIELDS"):
        input_model_for(endpoint.input_ref, endpoint.input_fields[:-1], endpoint.endpoint_id)


def test_lazy_models_package_gives_the_submodules_classes():
    assert set(models.__all__) <= set(dir(models))
    for name in models.__all__:
        value = getattr(models, name)
        assert value is getattr(importlib.import_module(value.__module__), name)
    assert models.SegmentImageInput is resolve_model("image:SegmentImageInput")
    assert models.image is importlib.import_module("airflow_provider_sam3.models.image")
    with pytest.raises(AttributeError):
        models.no_such_model  # noqa: B018
