"""The endpoint registry: endpoint id -> input model, output model, price and billing unit.

This is the one place an endpoint is described. Operators, the emulator, cost estimates, docs and tests read it;
adding a SAM version is a few rows in its table (``models.endpoint_table``: ids, kinds, models, prices, and the
input models' field names).

DAG files import this module (through the operators), so it is cheap: an entry names its pydantic models by
``"module:Class"`` and imports them on first use (validation, parsing), and carries the input model's field names
(``input_fields``), which is all the operators need when a DAG file is parsed. The field names are checked against
the model when it is first imported, and by the unit tests for every entry.
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_sam3.exceptions import InputValidationError
from airflow_provider_sam3.models.endpoint_table import ENDPOINT_ROWS, INPUT_FIELDS, BillingUnit, Kind

if TYPE_CHECKING:
    from airflow_provider_sam3.models.base import EndpointInput, EndpointOutput

__all__ = [
    "DEPRECATED_FIELDS",
    "ENDPOINTS",
    "Endpoint",
    "FRAMES_PER_VIDEO_UNIT",
    "MODELS_PACKAGE",
    "RegistryError",
    "VERSIONS",
    "endpoint_for",
    "get_endpoint",
    "input_model_for",
    "resolve_model",
]

FRAMES_PER_VIDEO_UNIT = 16
MODELS_PACKAGE = "airflow_provider_sam3.models"


class RegistryError(RuntimeError):
    """The registry disagrees with the models (a field added to a model but not to its entry): a provider bug."""


@functools.lru_cache(maxsize=None)
def resolve_model(ref: str) -> type[Any]:
    """The model class a reference names (``"image:SegmentImageInput"`` -> ``models.image.SegmentImageInput``)."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(f"{MODELS_PACKAGE}.{module}"), name)


@functools.lru_cache(maxsize=None)
def input_model_for(ref: str, fields: tuple[str, ...], endpoint_id: str) -> type[Any]:
    model = resolve_model(ref)
    if tuple(model.model_fields) != fields:
        raise RegistryError(
            f"{endpoint_id}: the registry lists input fields {fields}, but {model.__name__} has "
            f"{tuple(model.model_fields)}; update INPUT_FIELDS in airflow_provider_sam3/models/endpoint_table.py"
        )
    return model


@dataclass(frozen=True)
class Endpoint:
    """One fal endpoint of the SAM 3 family.

    ``input_ref`` and ``output_ref`` name the models (``"module:Class"`` under ``airflow_provider_sam3.models``);
    ``input_model`` and ``output_model`` import them on first use. ``input_fields`` are the input model's field
    names, in the model's order.
    """

    endpoint_id: str
    kind: Kind
    version: str
    title: str
    input_ref: str
    output_ref: str
    price_usd: float | None
    billing_unit: BillingUnit | None
    input_fields: tuple[str, ...]

    @property
    def input_model(self) -> type[EndpointInput]:
        return input_model_for(self.input_ref, self.input_fields, self.endpoint_id)

    @property
    def output_model(self) -> type[EndpointOutput]:
        return resolve_model(self.output_ref)

    @property
    def app_id(self) -> str:
        """Owner and app (``fal-ai/sam-3``): the part of the path fal's status, result and cancel URLs keep."""
        return "/".join(self.endpoint_id.split("/")[:2])

    @property
    def takes_image(self) -> bool:
        return "image_url" in self.input_fields

    def validate_input(self, arguments: Mapping[str, Any]) -> EndpointInput:
        """Build the request model, or raise ``InputValidationError`` naming each bad field. Nothing is sent."""
        from pydantic import ValidationError

        if not isinstance(arguments, Mapping):
            raise InputValidationError(
                "arguments", f"must be a mapping of field names to values, not {type(arguments).__name__}"
            )
        model = self.input_model
        try:
            return model.model_validate(dict(arguments))
        except ValidationError as error:
            details = [_with_suggestion(e, model) for e in error.errors(include_url=False)]
            raise InputValidationError.from_errors(self.endpoint_id, details) from None

    def parse_output(self, data: Mapping[str, Any]) -> EndpointOutput:
        """Parse fal's result body with this endpoint's output model."""
        return self.output_model.model_validate(data)

    def estimate_cost(self, *, requests: int = 1, frames: int | None = None) -> float | None:
        """What fal would charge, in USD; ``None`` when fal has not published a price (or frames are unknown)."""
        if self.price_usd is None:
            return None
        if self.billing_unit == "16 frames":
            if frames is None:
                return None
            return round(self.price_usd * math.ceil(frames / FRAMES_PER_VIDEO_UNIT) * requests, 6)
        return round(self.price_usd * requests, 6)


DEPRECATED_FIELDS = {"text_prompt": "prompt"}
"""Fields fal's schemas still carry as deprecated, and their replacement. The models do not offer them: the
provider always sends the replacement, so a request never depends on how long fal keeps accepting the old name."""


def _with_suggestion(error: Mapping[str, Any], model: type[EndpointInput]) -> Mapping[str, Any]:
    if error.get("type") != "extra_forbidden" or not error.get("loc"):
        return error
    import difflib

    name = str(error["loc"][-1])
    owner = _model_at(model, error["loc"][:-1])
    known = sorted(owner.model_fields) if owner else []
    if name in DEPRECATED_FIELDS and DEPRECATED_FIELDS[name] in known:
        return {**error, "msg": f"deprecated by fal; use {DEPRECATED_FIELDS[name]!r} instead (same meaning)"}
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return {**error, "msg": f"unknown field; {hint}fal would ignore it silently. Known fields: {', '.join(known)}"}


def _model_at(model: type[EndpointInput], loc: tuple[Any, ...]) -> type[EndpointInput] | None:
    """The nested model a pydantic error location points into (for prompts inside lists)."""
    from airflow_provider_sam3.models.base import EndpointInput

    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(str(part)) if hasattr(current, "model_fields") else None
        if field is None:
            return None
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        current = next((a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, EndpointInput)), None)
        if current is None:
            return None
    return current


def _entries() -> list[Endpoint]:
    return [
        Endpoint(
            endpoint_id,
            kind,
            "3.1" if "/sam-3-1/" in endpoint_id else "3",
            title,
            inp,
            out,
            price,
            unit,
            INPUT_FIELDS[inp],
        )
        for endpoint_id, kind, title, inp, out, price, unit in ENDPOINT_ROWS
    ]


ENDPOINTS: dict[str, Endpoint] = {e.endpoint_id: e for e in _entries()}
VERSIONS = ("3", "3.1")


def get_endpoint(endpoint_id: str) -> Endpoint:
    """The registry entry for ``endpoint_id``; an unknown id is an error listing the known ones."""
    try:
        return ENDPOINTS[endpoint_id]
    except (KeyError, TypeError):
        import difflib

        close = difflib.get_close_matches(str(endpoint_id), list(ENDPOINTS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise InputValidationError(
            "endpoint_id", f"{endpoint_id!r} is not a SAM 3 endpoint; {hint}", allowed=", ".join(ENDPOINTS)
        ) from None


def endpoint_for(kind: str, version: str = "3") -> Endpoint:
    """The endpoint of one kind (``"image"``, ``"video-rle"``, ...) in one SAM version (``"3"`` or ``"3.1"``)."""
    for endpoint in ENDPOINTS.values():
        if endpoint.kind == kind and endpoint.version == version:
            return endpoint
    if version not in VERSIONS:
        raise InputValidationError("version", f"{version!r} is not a SAM version", allowed=", ".join(VERSIONS))
    offered = sorted({e.kind for e in ENDPOINTS.values() if e.version == version})
    raise InputValidationError("kind", f"SAM {version} has no {kind!r} endpoint", allowed=", ".join(offered))
