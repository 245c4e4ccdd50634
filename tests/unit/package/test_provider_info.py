"""The provider's entry point: what `airflow providers list` reads, and every class path it names."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

import airflow_provider_sam3
from airflow_provider_sam3 import get_provider_info

MODULE_KEYS = {"python-modules"}
CLASS_KEYS = {"hook-class-name", "class-name", "extra-links", "hook-class-names", "notifications"}


def named_paths(node, key=None):
    """Every (kind, dotted path) the provider info names, wherever it sits in the dict."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from named_paths(v, k)
    elif isinstance(node, list):
        for item in node:
            yield from named_paths(item, key)
    elif isinstance(node, str) and key in MODULE_KEYS | CLASS_KEYS:
        yield ("module" if key in MODULE_KEYS else "class"), node


def test_package_name_matches_the_distribution():
    dist = importlib.metadata.distribution("airflow-provider-sam3")
    assert get_provider_info()["package-name"] == dist.metadata["Name"]
    assert dist.version == airflow_provider_sam3.__version__


def test_entry_point_returns_the_provider_info():
    eps = importlib.metadata.entry_points(group="apache_airflow_provider")
    ours = [ep for ep in eps if ep.value.startswith("airflow_provider_sam3")]
    assert len(ours) == 1
    assert ours[0].load()() == get_provider_info()


def test_every_class_path_in_provider_info_imports():
    paths = list(named_paths(get_provider_info()))
    assert any(kind == "class" for kind, _ in paths), "provider info names no class at all"
    for kind, dotted in paths:
        if kind == "module":
            importlib.import_module(dotted)
        else:
            module, _, name = dotted.rpartition(".")
            assert hasattr(importlib.import_module(module), name), f"{dotted} does not exist"


def test_provider_info_matches_airflows_schema():
    jsonschema = pytest.importorskip("jsonschema")
    import json

    import airflow

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_airflow_providers_list_shows_the_provider(tmp_path):
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    airflow_cli = Path(sys.executable).with_name("airflow")
    out = subprocess.run(
        [str(airflow_cli), "providers", "list", "-o", "plain"], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "airflow-provider-sam3" in out.stdout
    assert airflow_provider_sam3.__version__ in out.stdout


def test_provider_info_lists_every_hook_operator_sensor_and_trigger_module():
    """Every module of the package that defines a hook, operator, sensor or trigger class is listed under its kind
    (the batch operator and its trigger included), and nothing listed is of another kind."""
    import inspect
    import pkgutil

    from airflow.sdk import BaseHook, BaseOperator, BaseSensorOperator
    from airflow.triggers.base import BaseTrigger

    kinds = {"sensors": BaseSensorOperator, "operators": BaseOperator, "triggers": BaseTrigger, "hooks": BaseHook}
    defined: dict[str, set[str]] = {kind: set() for kind in kinds}
    for info in pkgutil.walk_packages(airflow_provider_sam3.__path__, "airflow_provider_sam3."):
        if ".testing" in info.name:
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != info.name:
                continue
            for kind, base in kinds.items():  # a sensor is an operator too: the first match wins
                if issubclass(cls, base):
                    defined[kind].add(info.name)
                    break
    listed = {kind: {m for entry in get_provider_info()[kind] for m in entry["python-modules"]} for kind in kinds}
    assert defined["operators"] >= {"airflow_provider_sam3.operators.batch"}
    assert defined["triggers"] >= {"airflow_provider_sam3.triggers.batch"}
    assert listed == defined
