"""Shared building blocks of the endpoint models: strict inputs, lenient outputs, URL-typed fields."""

from __future__ import annotations

import typing
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo, field_validator

__all__ = ["ACCEPTED_URL_SCHEMES", "EndpointInput", "EndpointOutput", "FileUrl"]

ACCEPTED_URL_SCHEMES = ("https://", "http://", "data:")


def _admits_bool(annotation: Any) -> bool:
    """Whether a field's annotation accepts a boolean (``bool``, ``bool | None``, ...)."""
    if annotation is bool:
        return True
    return any(_admits_bool(arg) for arg in typing.get_args(annotation) if not isinstance(arg, (int, str)))


class EndpointInput(BaseModel):
    """A request body for one fal endpoint.

    Unknown fields are refused: fal would silently ignore a misspelt field, and the user would pay for a
    request that did not do what they asked.
    """

    model_config = ConfigDict(extra="forbid", validate_default=True, defer_build=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """``True`` is 1 to Python: ``max_masks=True`` would be sent as 1. A boolean is refused where no boolean is
        expected (NaN and infinity are refused by ``allow_inf_nan=False``). A field with its own before-validator
        (``label``) explains booleans itself."""
        if isinstance(value, bool) and info.field_name is not None:
            field = cls.model_fields.get(info.field_name)
            own = any(type(item).__name__ == "BeforeValidator" for item in field.metadata) if field else False
            if field is not None and not own and not _admits_bool(field.annotation):
                raise ValueError(f"{value!r} is a boolean, which this field does not take; give a number")
        return value

    def to_request(self) -> dict:
        """The exact JSON body sent to fal: every known field, optional ones only when set."""
        return self.model_dump(mode="json", exclude_none=True)


class EndpointOutput(BaseModel):
    """A response body from one fal endpoint; lenient, so a field fal adds later is kept, not fatal."""

    model_config = ConfigDict(extra="allow", defer_build=True)


def _check_file_url(value: str, info: ValidationInfo) -> str:
    if not value or not value.strip():
        raise ValueError("must not be empty; give an http(s) URL or a data: URI")
    lowered = value.lstrip().lower()
    if not lowered.startswith(ACCEPTED_URL_SCHEMES):
        shown = value if len(value) <= 60 else value[:57] + "..."
        converted = (
            " (the operators' image also accepts a local path, bytes or an ObjectStoragePath and converts it)"
            if info.field_name == "image_url"
            else ""
        )
        raise ValueError(f"{shown!r} is not a URL fal can fetch; give an http(s) URL or a data: URI{converted}")
    if lowered.startswith(("http://", "https://")) and "://" in value and not value.split("://", 1)[1].split("/")[0]:
        raise ValueError(f"{value!r} has no host")
    return value


FileUrl = Annotated[str, AfterValidator(_check_file_url)]
"""A field fal fetches itself: an http(s) URL or a base64 ``data:`` URI."""
