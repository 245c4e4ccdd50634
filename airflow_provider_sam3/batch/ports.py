"""What the batch core needs from the world, as protocols: fal's queue, the task state store, and the folder its
results go to. ``FalHook``, Airflow's task state store and an ``ObjectStoragePath`` (or ``pathlib.Path``) fit them;
the core imports none of them, so it is read, typed and tested on its own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from airflow_provider_sam3.hooks.settings import FalSettings
    from airflow_provider_sam3.models.reference import RequestReference
    from airflow_provider_sam3.models.status import QueueStatus
    from airflow_provider_sam3.models.submit_options import SubmitOptions

__all__ = ["FalQueue", "KeyValueStore", "ResultFolder"]


class FalQueue(Protocol):
    """fal's queue, asynchronously: submit, status, result, cancel, plus the uploads and downloads of media."""

    async def aget_settings(self) -> FalSettings: ...

    async def asubmit(
        self,
        endpoint_id: str,
        arguments: Mapping[str, Any] | Any,
        *,
        options: SubmitOptions | None = None,
        deadline: float | None = None,
    ) -> RequestReference: ...

    async def astatus(
        self,
        ref: RequestReference,
        *,
        with_logs: bool = False,
        single_attempt: bool = False,
        deadline: float | None = None,
    ) -> QueueStatus: ...

    async def aresult(self, ref: RequestReference) -> dict[str, Any]: ...

    async def acancel(self, ref: RequestReference) -> str: ...

    async def aupload(self, data: bytes, content_type: str, file_name: str | None = None) -> str: ...

    async def adownload(self, url: str) -> bytes: ...

    async def aclose(self) -> None: ...


class KeyValueStore(Protocol):
    """The task state store: JSON values by key, surviving retries and clears of the run."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...

    def delete(self, key: str) -> None: ...


class ResultFolder(Protocol):
    """The batch's own folder under ``output_path`` (local or object storage): masks, documents, manifest parts."""

    def __truediv__(self, name: str) -> Any: ...

    def exists(self) -> bool: ...

    def open(self, mode: str = "r", *args: Any, **kwargs: Any) -> Any: ...
