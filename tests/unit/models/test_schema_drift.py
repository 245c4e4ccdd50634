"""Schema drift: every registry endpoint checked against a stored copy of fal's published schemas.

The copy is ``tests/fixtures/fal_published_schemas.json`` (sources named inside it). For every endpoint of the
registry, its input model must have exactly fal's fields, with fal's types, defaults, bounds and enums; its output
model must declare fal's output fields; its price and billing unit must be the stored ones. Where the provider
deliberately differs from fal, the difference is listed in ``LOCAL_CHOICES`` with its reason; anything else is
drift and fails, naming the endpoint, the field and both values. The registry may not hold an endpoint the copy
lacks, nor lack one it holds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_sam3.endpoints import ENDPOINTS
from airflow_provider_sam3.exceptions import InputValidationError

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "fal_published_schemas.json"
PUBLISHED = json.loads(FIXTURE.read_text())

LOCAL_CHOICES: dict[tuple[str, str, str], str] = {
    # (scope, field, what) -> why the provider differs from fal's published schema on purpose. Scope: "prompt" (the
    # point and box types), "*" (every endpoint) or an endpoint kind; what: a fixture key or "maximum_length".
    ("*", "prompt", "maximum_length"): "a local sanity bound (MAX_PROMPT_LENGTH): a longer text is a template mistake",
    **{
        ("prompt", axis, what): "a point or box needs its coordinates; 0 to MAX_PIXEL_COORDINATE is a sanity bound"
        for axis in ("x", "y", "x_min", "y_min", "x_max", "y_max")
        for what in ("required", "minimum", "maximum")
    },
    ("prompt", "frame_index", "minimum"): "frames are counted from 0; fal publishes no bound",
    ("video-rle", "frame_index", "minimum"): "frames are counted from 0; fal publishes no bound",
    ("prompt", "label", "default"): "fal publishes no default; 1 (foreground) is what a bare point means",
    ("video-rle", "frame_index", "default"): (
        "None (not sent) unless mask_url is given, whose frame it names; fal then applies its default 0"
    ),
    ("3d-align", "focal_length", "minimum"): "a focal length is positive; fal publishes no bound",
    ("video-rle", "video", "output_required"): "the third party X saw video-rle answer with RLE instead of a video",
}


def _chosen(owner: str, kind: str, name: str, what: str) -> bool:
    scope = "prompt" if owner in PROMPT_TYPES else kind
    return (scope, name, what) in LOCAL_CHOICES or ("*", name, what) in LOCAL_CHOICES


PROMPT_TYPES = {"PointPrompt", "PointPromptBase", "BoxPrompt", "BoxPromptBase"}


def _resolve(spec: Any, shapes: dict[str, Any]) -> dict[str, Any]:
    """An endpoint's ``input``/``output``: inline, a shape name, or a list of shape names merged in order."""
    if isinstance(spec, str):
        return shapes[spec]
    if isinstance(spec, list):
        merged: dict[str, Any] = {}
        for name in spec:
            merged.update(shapes[name])
        return merged
    return spec


def _schema(field: Any) -> dict[str, Any]:
    """One model field as the fixture writes one: type, enum, minimum/maximum, items."""
    from pydantic import TypeAdapter

    schema = TypeAdapter(field.annotation).json_schema() if not field.metadata else _with_metadata(field)
    options = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]
    assert len(options) == 1, f"unexpected union {schema}"
    (one,) = options
    out: dict[str, Any] = {}
    if "enum" in one:
        out["type"], out["enum"] = "enum", one["enum"]
    elif "const" in one:
        out["type"], out["enum"] = "enum", [one["const"]]
    else:
        out["type"] = one.get("type")
    if "minimum" in one or "exclusiveMinimum" in one:
        out["minimum"] = one.get("minimum", one.get("exclusiveMinimum"))
    if "maximum" in one:
        out["maximum"] = one["maximum"]
    if "maxLength" in one:
        out["maximum_length"] = one["maxLength"]
    if out["type"] == "array":
        items = one.get("items", {})
        out["items"] = items["$ref"].rsplit("/", 1)[-1] if "$ref" in items else items.get("type")
    return out


def _with_metadata(field: Any) -> dict[str, Any]:
    from typing import Annotated

    from pydantic import TypeAdapter

    return TypeAdapter(Annotated[(field.annotation, *field.metadata)]).json_schema()


def _model_default(model: type, name: str) -> Any:
    field = model.model_fields[name]
    if field.is_required():
        return getattr(model, "server_default_prompt", "<required>") if name == "prompt" else "<required>"
    return field.get_default(call_default_factory=True)


def _drift_of_field(where: str, name: str, published: dict[str, Any], model: type, owner: str) -> list[str]:
    field = model.model_fields[name]
    ours = _schema(field)
    problems = []
    kind = ENDPOINTS[owner].kind if owner in ENDPOINTS else owner

    def differ(what: str, theirs: Any, mine: Any) -> None:
        problems.append(f"{where}.{name}: {what} is {mine!r} here, fal publishes {theirs!r}")

    if ours["type"] != published["type"] and not (published["type"] == "number" and ours["type"] == "integer"):
        differ("type", published["type"], ours["type"])
    if published["type"] == "enum" and sorted(map(str, ours.get("enum", []))) != sorted(map(str, published["enum"])):
        differ("enum", published["enum"], ours.get("enum"))
    if published.get("items") and ours.get("items") != published["items"]:
        differ("item type", published["items"], ours.get("items"))
    for bound in ("minimum", "maximum"):
        theirs, mine = published.get(bound), ours.get(bound)
        if theirs != mine and not (theirs is None and _chosen(owner, kind, name, bound)):
            differ(bound, theirs, mine)
    if "maximum_length" in ours and not _chosen(owner, kind, name, "maximum_length"):
        differ("maximum length", None, ours["maximum_length"])
    required_here = field.is_required() and not (name == "prompt" and hasattr(model, "server_default_prompt"))
    if required_here != published["required"] and not _chosen(owner, kind, name, "required"):
        differ("required", published["required"], required_here)
    default = _model_default(model, name)
    if default == "<required>" or _chosen(owner, kind, name, "default"):
        return problems
    if "default" in published:
        if default != published["default"]:
            differ("default", published["default"], default)
    elif default not in (None, []) or (default == [] and published["type"] != "array"):
        differ("default (fal publishes none: the field must be left unsent)", None, default)
    return problems


def _drift_of_model(where: str, published_fields: dict[str, Any], model: type, owner: str) -> list[str]:
    ours, theirs = set(model.model_fields), set(published_fields)
    problems = [f"{where}: field {n!r} is published by fal but missing here" for n in sorted(theirs - ours)]
    problems += [f"{where}: field {n!r} is here but not in fal's schema" for n in sorted(ours - theirs)]
    for name in sorted(ours & theirs):
        problems += _drift_of_field(where, name, published_fields[name], model, owner)
    return problems


def _nested_models(model: type) -> dict[str, type]:
    found = {}
    for field in model.model_fields.values():
        for arg in getattr(field.annotation, "__args__", ()):
            if isinstance(arg, type) and arg.__name__ in PROMPT_TYPES:
                found[arg.__name__] = arg
    return found


def drift(published: dict[str, Any]) -> list[str]:
    """Every difference between the registry and ``published`` (the fixture's shape), as sentences."""
    shapes, endpoints = published["shapes"], published["endpoints"]
    problems = [
        f"{e}: in the registry but not in the stored copy of fal's schemas" for e in set(ENDPOINTS) - set(endpoints)
    ]
    problems += [f"{e}: published by fal but missing from the registry" for e in set(endpoints) - set(ENDPOINTS)]
    for endpoint_id in sorted(set(ENDPOINTS) & set(endpoints)):
        entry, facts = ENDPOINTS[endpoint_id], endpoints[endpoint_id]
        model = entry.input_model
        problems += _drift_of_model(endpoint_id, _resolve(facts["input"], shapes), model, f"{endpoint_id}")
        for name, nested in _nested_models(model).items():
            problems += _drift_of_model(f"{endpoint_id} {name}", published["types"][name]["fields"], nested, name)
        for name in facts.get("deprecated", {}):
            if name in model.model_fields:
                problems.append(f"{endpoint_id}: deprecated field {name!r} is offered; fal asks for its replacement")
        output = _resolve(facts["output"], shapes)
        out_fields = entry.output_model.model_fields
        for name in output["required"] + output["optional"]:
            if name not in out_fields:
                problems.append(f"{endpoint_id} output: field {name!r} is published by fal but not declared here")
        for name in output["required"]:
            lenient = _chosen("", entry.kind, name, "output_required")
            if name in out_fields and not out_fields[name].is_required() and not lenient:
                problems.append(f"{endpoint_id} output: {name!r} is required by fal but optional here")
        price = facts["price"]
        if (entry.price_usd, entry.billing_unit) != (price["usd"], price["unit"]):
            problems.append(
                f"{endpoint_id}: price is {entry.price_usd!r} per {entry.billing_unit!r} here, the stored copy says "
                f"{price['usd']!r} per {price['unit']!r} ({price['src']})"
            )
    return problems


def test_every_registry_endpoint_matches_fals_published_schema():
    problems = drift(PUBLISHED)
    assert not problems, "drift from fal's published schemas:\n" + "\n".join(problems)


def test_the_fixture_names_a_source_for_every_fact():
    for endpoint_id, facts in PUBLISHED["endpoints"].items():
        assert facts["price"]["src"], endpoint_id
        fields = _resolve(facts["input"], PUBLISHED["shapes"])
        assert all(spec.get("src") for spec in fields.values()), endpoint_id


# The test must be able to fail: each mutation of the stored copy below is drift the test reports.
MUTATIONS = [
    ("shapes", "video_input", "detection_threshold", "minimum", 0.0, "detection_threshold: minimum"),
    ("shapes", "image_input", "max_masks", "maximum", 64, "max_masks: maximum"),
    ("shapes", "image_input", "max_masks", "default", 4, "max_masks: default"),
    ("shapes", "image_input", "output_format", "enum", ["png"], "output_format: enum"),
    ("shapes", "video_rle_input", "apply_mask", "default", True, "apply_mask: default"),
    ("shapes", "max_num_objects", "max_num_objects", "maximum", 256, "max_num_objects: maximum"),
]


@pytest.mark.parametrize(("section", "shape", "field", "key", "value", "expected"), MUTATIONS)
def test_a_changed_published_fact_is_reported_as_drift(section, shape, field, key, value, expected):
    mutated = json.loads(json.dumps(PUBLISHED))
    mutated[section][shape][field][key] = value
    assert any(expected in problem for problem in drift(mutated)), drift(mutated)


def test_a_changed_price_a_new_field_and_a_new_endpoint_are_reported():
    mutated = json.loads(json.dumps(PUBLISHED))
    mutated["endpoints"]["fal-ai/sam-3/3d-objects"]["price"]["usd"] = 0.065
    mutated["shapes"]["video_rle_input"]["mask_threshold"] = {"type": "number", "required": False, "src": "test"}
    mutated["endpoints"]["fal-ai/sam-3-2/image"] = mutated["endpoints"]["fal-ai/sam-3-1/image"]
    problems = "\n".join(drift(mutated))
    assert "fal-ai/sam-3/3d-objects: price" in problems
    assert "'mask_threshold' is published by fal but missing here" in problems
    assert "fal-ai/sam-3-2/image: published by fal but missing from the registry" in problems


@pytest.mark.parametrize("endpoint_id", ["fal-ai/sam-3/image", "fal-ai/sam-3/video"])
def test_the_deprecated_text_prompt_is_refused_naming_its_replacement(endpoint_id):
    with pytest.raises(InputValidationError) as caught:
        ENDPOINTS[endpoint_id].validate_input(
            {"image_url": "https://e.com/a.png", "video_url": "https://e.com/a.mp4", "text_prompt": "shoe"}
        )
    assert "text_prompt" in str(caught.value) and "'prompt'" in str(caught.value)


def test_point_labels_are_sent_as_fals_integers_whether_given_as_int_or_string():
    endpoint = ENDPOINTS["fal-ai/sam-3/image"]
    for label in (0, 1, "0", "1"):
        body = endpoint.validate_input(
            {"image_url": "https://e.com/a.png", "point_prompts": [{"x": 1, "y": 1, "label": label}]}
        )
        assert body.to_request()["point_prompts"][0]["label"] == int(label)
    for bad in ("foreground", 2, True, "2"):
        with pytest.raises(InputValidationError, match="label"):
            endpoint.validate_input(
                {"image_url": "https://e.com/a.png", "point_prompts": [{"x": 1, "y": 1, "label": bad}]}
            )


@pytest.mark.parametrize(
    ("endpoint_id", "accepted", "refused"),
    [
        ("fal-ai/sam-3/video", 0.1, 0.05),
        ("fal-ai/sam-3-1/video", 0.1, 0.05),
        ("fal-ai/sam-3/video-rle", 0.01, 0.005),
        ("fal-ai/sam-3-1/video-rle", 0.01, 0.005),
        ("fal-ai/sam-3/video-rle-objects", 0.01, 0.005),
    ],
)
def test_detection_threshold_floors_are_fals(endpoint_id, accepted, refused):
    endpoint = ENDPOINTS[endpoint_id]
    video = "https://e.com/a.mp4"
    assert endpoint.validate_input({"video_url": video, "detection_threshold": accepted}).to_request()
    with pytest.raises(InputValidationError, match=f"greater than or equal to {accepted}"):
        endpoint.validate_input({"video_url": video, "detection_threshold": refused})


def test_sam31_video_rle_takes_max_num_objects_within_fals_bounds():
    endpoint = ENDPOINTS["fal-ai/sam-3-1/video-rle"]
    video = "https://e.com/a.mp4"
    assert endpoint.validate_input({"video_url": video}).to_request()["max_num_objects"] == 16
    assert endpoint.validate_input({"video_url": video, "max_num_objects": 128}).to_request()["max_num_objects"] == 128
    for bad in (0, 129, True):
        with pytest.raises(InputValidationError, match="max_num_objects"):
            endpoint.validate_input({"video_url": video, "max_num_objects": bad})
