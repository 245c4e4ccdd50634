"""What a SAM 3 task tells lineage and data-aware scheduling about its run: OpenLineage datasets (named by Airflow's
object-storage convention: namespace ``scheme://bucket``, name the key; ``file`` and the path for local files) and a
run facet of the provider's own, and the ``extra`` of its outlets' asset events.

Built only from what the task kept while it ran (a resumed deferrable task is a fresh operator: execute_complete
keeps it too), never one dataset per image: a batch names its input folders and its own output folder and manifest.
The OpenLineage provider is an optional extra: its classes are imported only when it asks for lineage. This module
is imported only then too, or when a finished task publishes its asset events (``kept_result`` is what DAG files
import).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "ASSET_EXTRA_FIELDS",
    "FACET_NAME",
    "MAX_INPUT_DATASETS",
    "asset_extra",
    "dataset_for",
    "input_folders",
    "openlineage_for",
    "parameter_inputs",
    "result_lineage",
    "task_lineage",
]

FACET_NAME = "sam3"
"""The key of the provider's run facet in OpenLineage events."""
MAX_INPUT_DATASETS = 10
"""A batch names at most this many input folders; more are named by their common prefix."""
FACET_SCHEMA = "https://github.com/airflow-provider-sam3/airflow-provider-sam3/blob/main/docs/lineage.md#sam3-run-facet"
GLOB_CHARACTERS = "*?["
ASSET_EXTRA_FIELDS = (
    *("manifest", "output_path", "output_location", "endpoint_id", "request_id", "images", "succeeded", "failed"),
    *("invalid", "unfinished", "billed_requests", "cost_usd", "shards"),
)
"""What an outlet's asset event carries in its ``extra``, when the task's result has it."""
_FACET_FIELDS = (
    "endpoint_id",
    "model_version",
    "request_id",
    "images",
    "succeeded",
    "failed",
    "invalid",
    "submissions",
    "billed_requests",
    "cost_usd",
    "cost_estimate_usd",
    "manifest",
    "shards",
)


def dataset_for(location: Any) -> tuple[str, str] | None:
    """(namespace, name) of a file, folder or URL; ``None`` for inline data (a data URI) or a relative path.
    User info, connection ids, query strings and fragments never reach the name (signed URLs carry secrets there)."""
    text = str(location).strip()
    if not text or text[:5].lower() == "data:":
        return None
    if "://" not in text:
        return ("file", os.path.normpath(text)) if os.path.isabs(text) else None
    scheme, rest = text.split("://", 1)
    scheme = scheme.lower()
    rest = rest.split("?", 1)[0].split("#", 1)[0]
    if scheme == "file":
        return "file", os.path.normpath("/" + rest.lstrip("/"))
    authority, _, path = rest.partition("/")
    authority = authority.rsplit("@", 1)[-1]
    if not authority:
        return None
    if scheme in ("http", "https"):
        return f"{scheme}://{authority}", "/" + path
    return f"{scheme}://{authority}", path.rstrip("/") or "/"


def _folder(namespace: str, name: str) -> tuple[str, str]:
    parent = name.rsplit("/", 1)[0] if "/" in name.strip("/") else ("/" if name.startswith("/") else "")
    return namespace, parent or "/"


def input_folders(images: Any) -> list[tuple[str, str]]:
    """The datasets a batch reads: the folder, glob base or listing file it was given, or for a list of images the
    distinct folders they lie in (their common prefix when there are more than ``MAX_INPUT_DATASETS``)."""
    if isinstance(images, (str, os.PathLike)) or hasattr(images, "protocol"):
        text = str(images)
        if any(ch in text for ch in GLOB_CHARACTERS):
            text = text[: min(text.index(ch) for ch in GLOB_CHARACTERS if ch in text)].rsplit("/", 1)[0]
        found = dataset_for(text)
        return [found] if found else []
    folders: dict[tuple[str, str], None] = {}
    for item in images if isinstance(images, Iterable) and not isinstance(images, Mapping) else [images]:
        source = item.get("image", item.get("image_url")) if isinstance(item, Mapping) else item
        found = dataset_for(source) if source is not None else None
        if found:
            folders[_folder(*found)] = None
    if len(folders) <= MAX_INPUT_DATASETS:
        return list(folders)
    by_namespace: dict[str, list[str]] = {}
    for namespace, name in folders:
        by_namespace.setdefault(namespace, []).append(name)
    return [(namespace, os.path.commonpath(names) or "/") for namespace, names in by_namespace.items()]


def result_lineage(result: Mapping[str, Any] | None) -> tuple[list[tuple[str, str]], list[tuple[str, str]], dict]:
    """(inputs, outputs, facet fields) of a finished task's XCom value: a single-image document, a batch summary
    or a merged summary. Inputs of a batch come from its ``images`` (``input_folders``), not from here."""
    if not isinstance(result, Mapping):
        return [], [], {}
    facts = {key: result[key] for key in _FACET_FIELDS if result.get(key) is not None}
    outputs: list[tuple[str, str]] = []
    inputs: list[tuple[str, str]] = []
    if "manifest" in result:  # a batch or merged summary
        for location in (result.get("output_path"), result.get("manifest")):
            found = dataset_for(location) if location else None
            if found and found not in outputs:
                outputs.append(found)
        for manifest in result.get("shard_manifests") or []:
            found = dataset_for(manifest)
            if found:
                inputs.append(found)
        if "cost_estimate_usd" in facts:
            facts["cost_estimate_usd"] = result["cost_estimate_usd"]
        return inputs, outputs, facts
    image = result.get("image") if isinstance(result.get("image"), Mapping) else None
    source = dataset_for(image.get("source")) if image and image.get("source") else None
    if source:
        inputs.append(source)
    stored = dataset_for(result["output_location"]) if result.get("output_location") else None
    if stored:
        outputs.append(stored)
    return inputs, outputs, facts


def asset_extra(result: Mapping[str, Any] | None) -> dict[str, Any]:
    """What an outlet's asset event carries: where the results are (manifest or output location), counts, cost."""
    if not isinstance(result, Mapping):
        return {}
    return {key: result[key] for key in ASSET_EXTRA_FIELDS if result.get(key) is not None}


def openlineage_for(inputs: Iterable[tuple[str, str]], outputs: Iterable[tuple[str, str]], facts: Mapping) -> Any:
    """An ``OperatorLineage`` with these datasets and the provider's run facet (only called by the OpenLineage
    provider, which brings its classes)."""
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import Dataset

    run_facets = {FACET_NAME: _run_facet(facts)} if facts else {}
    return OperatorLineage(
        inputs=[Dataset(namespace=namespace, name=name) for namespace, name in dict.fromkeys(inputs)],
        outputs=[Dataset(namespace=namespace, name=name) for namespace, name in dict.fromkeys(outputs)],
        run_facets=run_facets,
    )


def _run_facet(facts: Mapping[str, Any]) -> Any:
    from openlineage.client.facet_v2 import RunFacet

    class Sam3RunFacet(RunFacet):
        """The provider's own run facet: endpoint, model version, counts and cost."""

        @staticmethod
        def _get_schema() -> str:
            return FACET_SCHEMA

    return Sam3RunFacet().with_additional_properties(**{key: facts[key] for key in _FACET_FIELDS if key in facts})


def parameter_inputs(operator: Any) -> list[tuple[str, str]]:
    """The image a single-image task was given (``image`` or ``arguments["image_url"]``), as a dataset."""
    image = getattr(operator, "image", None)
    if image is None and isinstance(getattr(operator, "arguments", None), Mapping):
        image = operator.arguments.get("image_url")
    found = dataset_for(image) if isinstance(image, (str, os.PathLike)) or hasattr(image, "protocol") else None
    return [found] if found else []


def task_lineage(operator: Any, *, inputs: Iterable[tuple[str, str]] = (), endpoint_id: str | None = None) -> Any:
    """The ``OperatorLineage`` of a SAM 3 task from what it kept (see ``keeps_result`` and ``keep_inputs``), plus
    ``inputs`` it knows from its parameters; ``None`` when it kept nothing and knows no dataset. Never reads an
    upstream task's XCom (it runs in a forked process)."""
    from airflow_provider_sam3.operators.kept_result import KEPT_INPUTS, KEPT_RESULT

    found_inputs, outputs, facts = result_lineage(getattr(operator, KEPT_RESULT, None))
    found_inputs += getattr(operator, KEPT_INPUTS, None) or []
    endpoint_id = facts.get("endpoint_id") or endpoint_id or getattr(operator, "endpoint_id", None)
    if isinstance(endpoint_id, str):
        from airflow_provider_sam3.endpoints import ENDPOINTS

        facts.setdefault("endpoint_id", endpoint_id)
        if endpoint_id in ENDPOINTS:
            facts.setdefault("model_version", ENDPOINTS[endpoint_id].version)
    all_inputs = [*found_inputs, *inputs]
    if not (all_inputs or outputs or facts):
        return None
    return openlineage_for(all_inputs, outputs, facts)
