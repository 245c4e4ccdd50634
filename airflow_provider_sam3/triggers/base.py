"""The provider's trigger base: ``serialize()`` from the constructor's own parameters, so a trigger's kwargs are
written once (in ``__init__``) and a rebuilt trigger is always the one that was deferred."""

from __future__ import annotations

import inspect
from typing import Any

from airflow.triggers.base import BaseTrigger

__all__ = ["ConstructorSerializedTrigger"]


class ConstructorSerializedTrigger(BaseTrigger):
    """A trigger whose kwargs are its ``__init__`` parameters, each kept as an attribute of the same name (JSON
    primitives only: they are stored in the metadata database and rebuild the trigger after a restart)."""

    def serialize(self) -> tuple[str, dict[str, Any]]:
        names = [name for name in inspect.signature(type(self).__init__).parameters if name != "self"]
        return f"{type(self).__module__}.{type(self).__qualname__}", {name: getattr(self, name) for name in names}
