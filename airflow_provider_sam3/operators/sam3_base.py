"""The base of the typed SAM 3 operators (``operators.sam3``): one endpoint kind each, driven by the registry.

A typed operator takes the endpoint's input fields as keyword arguments (templated; or as an ``arguments`` mapping,
e.g. from XCom), plus ``version="3"`` or ``"3.1"`` to pick the SAM version, and ``image`` for endpoints that take
an image: a URL, a data URI, a local path, bytes or an ``ObjectStoragePath`` (local content up to 4 MiB is sent as
a data URI; larger images are uploaded to fal storage, as the batch does, and sent as its URL).

At run time each subclass's ``__init__`` declares its fields from the registry (``Sam3Operator.__init_subclass__``)
so ``partial()``/``expand()`` accept them; type checkers and IDEs read the signatures from ``operators/sam3.pyi``,
generated from the registry's models by ``operators.stubs``.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from airflow_provider_sam3.endpoints import ENDPOINTS, endpoint_for
from airflow_provider_sam3.operators.queue import FalQueueOperator
from airflow_provider_sam3.operators.request_bodies import PreparedRequest, prepare_image_argument

__all__ = ["SET_BY_THE_OPERATOR", "Sam3Operator"]

SET_BY_THE_OPERATOR = ("endpoint_id",)
"""``FalQueueOperator`` parameters a typed operator sets itself (from its ``kind`` and ``version``)."""


def _fields_of_kind(kind: str) -> tuple[str, ...]:
    """Every input field any version of this kind accepts (the version switch may add some)."""
    names: dict[str, None] = {}
    for endpoint in ENDPOINTS.values():
        if endpoint.kind == kind:
            names.update(dict.fromkeys(endpoint.input_fields))  # the registry's names: no model import at parse
    return tuple(names)


def _init_declaring(fields: tuple[str, ...], owner: str) -> Any:
    """An ``__init__`` whose signature names the endpoint's fields, so ``partial()``/``expand()`` accept them."""

    def __init__(self: Sam3Operator, **kwargs: Any) -> None:
        Sam3Operator.__init__(self, **kwargs)

    keyword = inspect.Parameter.KEYWORD_ONLY
    __init__.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(name, keyword, default=None) for name in fields]
        + [inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)]
    )
    __init__.__qualname__ = f"{owner}.__init__"
    return __init__


class Sam3Operator(FalQueueOperator):
    """Base of the typed SAM 3 operators; subclasses only name their ``kind``."""

    kind: ClassVar[str] = ""
    requires_output_path: ClassVar[bool] = False
    input_fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.kind:
            return
        cls.input_fields = _fields_of_kind(cls.kind)
        clashes = [name for name in cls.input_fields if hasattr(FalQueueOperator, name)]
        if clashes:
            raise TypeError(f"{cls.__name__}: input fields {clashes} clash with operator attributes")
        extra = ("image",) if "image_url" in cls.input_fields else ()
        cls.template_fields = (*FalQueueOperator.template_fields, "version", *extra, *cls.input_fields)
        setattr(cls, "__init__", _init_declaring(cls.input_fields, cls.__name__))  # mypy refuses assigning to a method

    def __init__(self, *, version: str = "3", image: Any = None, **kwargs: Any) -> None:
        given = {name: kwargs.pop(name) for name in list(kwargs) if name in self.input_fields}
        super().__init__(endpoint_id=None, **kwargs)  # one of SET_BY_THE_OPERATOR
        self.version = version
        self.image = image
        for name in self.input_fields:
            setattr(self, name, given.get(name))

    def prepare_request(self, context: Any) -> PreparedRequest:
        from airflow_provider_sam3.exceptions import InputValidationError

        offered = [e.version for e in ENDPOINTS.values() if e.kind == self.kind]
        version = str(self.version).strip() if isinstance(self.version, (str, int, float)) else None
        if version not in offered:
            raise InputValidationError(
                "version",
                f"{self.version!r}: {type(self).__name__} ({self.kind!r}) has no such SAM version",
                allowed=", ".join(repr(v) for v in offered),
            )
        endpoint = endpoint_for(self.kind, version)
        self.endpoint_id = endpoint.endpoint_id
        if not isinstance(self.arguments, dict):
            raise InputValidationError(
                "arguments", f"must be a mapping of field names to values, not {self.arguments!r}"
            )
        given = {name: getattr(self, name) for name in self.input_fields if getattr(self, name) is not None}
        arguments = {**self.arguments, **given}  # keyword arguments win over the ``arguments`` mapping
        if self.requires_output_path and not self.output_path:
            raise InputValidationError(
                "output_path", f"is required by {type(self).__name__}: results too large for XCom are written there"
            )
        if self.image is not None and "image_url" in arguments:
            raise InputValidationError("image", "give either image or image_url, not both")
        source, field = (self.image, "image") if self.image is not None else (arguments.get("image_url"), "image_url")
        image, pending = None, []
        if source is not None and "image_url" in endpoint.input_model.model_fields:
            arguments["image_url"], image, upload = prepare_image_argument(
                endpoint, source, field, self.log, self.fal_conn_id
            )
            pending += [upload] if upload else []
        if arguments.get("video_url") is not None and "video_url" in endpoint.input_model.model_fields:
            from airflow_provider_sam3.operators.request_bodies import PLACEHOLDER_VIDEO_URL, read_local_video

            video = read_local_video(arguments["video_url"], "video_url")
            if video is not None:  # the other fields are checked before the upload
                arguments["video_url"] = PLACEHOLDER_VIDEO_URL
                pending.append(video)
        body = endpoint.validate_input(arguments).to_request()
        from airflow_provider_sam3.operators.preflight import check_prompt_geometry, ignored_fields_warning

        check_prompt_geometry(body, image)
        warning = ignored_fields_warning(arguments, body)
        if warning:
            self.log.warning("%s", warning)
        if body.get("sync_mode") and not self.output_path:
            raise InputValidationError(
                "sync_mode", "returns masks inline as data URIs, too large for XCom; set output_path to keep them"
            )
        return PreparedRequest.with_uploads(endpoint.endpoint_id, body, image, pending)  # uploaded when sent
