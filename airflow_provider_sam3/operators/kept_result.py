"""What a SAM 3 task keeps of its run for lineage and asset events: the value ``execute`` / ``execute_complete``
returned, what a failing batch knew, and the folders of a batch's images. Small on purpose: DAG files import it
(the operators' decorators); the dataset and facet code in ``operators.lineage`` is imported only when used."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

__all__ = ["KEPT_INPUTS", "KEPT_RESULT", "keep_failure", "keep_inputs", "keeps_result", "publish_asset_extra"]

Method = TypeVar("Method", bound=Callable[..., Any])
KEPT_INPUTS = "_sam3_kept_inputs"
KEPT_RESULT = "_sam3_kept_result"
"""The operator attribute holding what its execute or execute_complete returned (or what a failed batch knew)."""


def keeps_result(method: Method) -> Method:
    """For ``execute`` and ``execute_complete``: keep what the task returns on the operator (the OpenLineage provider
    asks for lineage after the method, in the same process) and put it on the outlets' asset events."""

    @functools.wraps(method)
    def kept(self: Any, context: Any, *args: Any, **kwargs: Any) -> Any:
        result = method(self, context, *args, **kwargs)
        setattr(self, KEPT_RESULT, result)
        publish_asset_extra(context, getattr(self, "outlets", None) or (), result)
        return result

    return kept  # type: ignore[return-value]


def keep_failure(operator: Any, summary: Mapping[str, Any]) -> None:
    """What a batch that failed knew (its summary so far), for the lineage of the failed run."""
    setattr(operator, KEPT_RESULT, dict(summary))


def keep_inputs(operator: Any, sources: Iterable[Any]) -> None:
    """The folders a batch's images lie in, kept while they are at hand: lineage is asked for later, in a forked
    process where an upstream task's lazily pulled XCom must not be read again."""
    from airflow_provider_sam3.operators.lineage import input_folders

    setattr(operator, KEPT_INPUTS, input_folders(list(sources)))


def publish_asset_extra(context: Any, outlets: Iterable[Any], result: Mapping[str, Any] | None) -> None:
    """Put ``asset_extra(result)`` on the asset event of each of the task's outlets."""
    outlets = list(outlets or ())
    if not outlets:
        return
    from airflow_provider_sam3.operators.lineage import asset_extra

    extra = asset_extra(result)
    events = context.get("outlet_events") if isinstance(context, Mapping) else None
    if not extra or events is None:
        return
    for outlet in outlets or ():
        try:
            events[outlet].extra.update(extra)
        except (KeyError, TypeError, AttributeError):  # not an asset (a dataset alias, a plain object): no event
            continue
