"""The result cache: entries written once under a folder that runs, backfills and shards share, checked when read.

Layout under ``result_cache`` (a local folder or any ``ObjectStoragePath``), one folder per key
(``storage.cache_keys.request_key``)::

    v1/<key[:2]>/<key>/<writer>/<name> the request's output files (masks, preview, meshes, ...), in a folder of
                                      the writer's own, so two tasks writing one key never mix their files
    v1/<key[:2]>/<key>/entry.json     written last: the caller's payload (fal's result body), the request id that
                                      paid for it, what it cost, when, each file's size and sha256, and which fal
                                      URL each file was fetched from
    v1/<key[:2]>/<key>/claim.json     a task paying for this key now (``claim``)

An entry exists once its ``entry.json`` does: a local one is written under a temporary name and renamed, an object
store's single write is all or nothing. The disk is untrusted: a reader checks ``entry.json`` (size, depth, every
field) and every file against it (a regular file inside the entry, its size, its sha256). A damaged or partial
entry is a miss, said in the log, and the next write replaces it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_sam3.exceptions import InputValidationError, InvalidImageError

__all__ = [
    "CACHE_MODES",
    "MAX_ENTRY_BYTES",
    "MAX_FILE_BYTES",
    "CachedResult",
    "ResultCache",
    "check_cache_settings",
]

CACHE_MODES = ("read_write", "read", "write", "refresh")
"""``read_write``: use entries and add new ones; ``read``: use, never add; ``write``: add, never use; ``refresh``:
never use, replace."""
MAX_ENTRY_BYTES = 64 * 1024 * 1024
"""Largest ``entry.json`` written or read: fal's result body (at most the 64 MiB the hook reads; a batch's masks
come inline in it), plus file records. A larger one is not kept (said in the log), never written unreadable."""
MAX_FILE_BYTES = 2 * 1024 * 1024 * 1024
"""Largest cached file read (3D meshes and videos are the large ones)."""
ENTRY_VERSION = "v1"
_KEY = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class CachedResult:
    """One checked entry: the caller's payload, the request that paid for it, where its files are in the cache and
    which fal URL each one stands for."""

    key: str
    endpoint_id: str
    request_id: str
    payload: dict[str, Any]
    cost_usd: float | None
    created_at: float
    files: dict[str, Any]
    sources: dict[str, str]
    checks: dict[str, tuple[int, str]]
    """Each file's size and sha256, as its entry recorded them."""

    def read(self, url: str) -> bytes:
        """The bytes of the file fetched from ``url`` when the entry was made, checked again against its size and
        sha256 as they are read (the folder is shared: a file can change between the check and the copy)."""
        from airflow_provider_sam3.guards.files import read_regular_file

        name = self.sources.get(url)
        if name is None:
            raise ValueError(f"result cache entry {self.key} holds no file for {url[:120]!r}")
        where = f"result cache entry {self.key}: {name}"
        data = read_regular_file(self.files[name], where, MAX_FILE_BYTES, setting=None)
        size, digest = self.checks[name]
        if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
            raise ValueError(f"{where} changed since its entry was checked")
        return data


def check_cache_settings(*, root: Any, mode: Any, max_age: Any, salt: Any, key_urls: Any) -> None:
    """An operator's cache settings, checked before anything is sent: each wrong one named with what is allowed."""
    if root is not None and not isinstance(root, str) and not hasattr(root, "joinpath"):
        raise InputValidationError("result_cache", f"{root!r} must be a folder's path or URL (or an ObjectStoragePath)")
    if mode not in CACHE_MODES:
        raise InputValidationError("cache_mode", f"{mode!r} is not a cache mode", allowed=", ".join(CACHE_MODES))
    if max_age is not None and (
        isinstance(max_age, bool) or not isinstance(max_age, (int, float)) or not 0 < max_age < math.inf
    ):
        raise InputValidationError("cache_max_age", f"{max_age!r} must be a positive number of seconds")
    if salt is not None and (not isinstance(salt, str) or len(salt) > 1000):
        raise InputValidationError("cache_salt", f"{salt!r} must be a string of at most 1,000 characters")
    if not isinstance(key_urls, bool):
        raise InputValidationError("cache_urls", f"{key_urls!r} must be True or False")


class ResultCache:
    """Entries under ``root`` (see the module's layout), used as ``mode`` says; ``max_age`` seconds makes older
    entries miss."""

    def __init__(self, root: Any, *, mode: str = "read_write", max_age: float | None = None, log: Any = None) -> None:
        check_cache_settings(root=root, mode=mode, max_age=max_age, salt=None, key_urls=False)
        self.root = _as_path(root)
        self.mode = mode
        self.max_age = max_age
        self.log = log

    def folder(self, key: str) -> Any:
        if not _KEY.fullmatch(key):
            raise ValueError(f"{key!r} is not a cache key")
        return self.root / ENTRY_VERSION / key[:2] / key

    # ------------------------------------------------------------------ reading

    def get(self, key: str, *, now: float | None = None) -> CachedResult | None:
        """The checked entry for ``key``; ``None`` when there is none, it is too old, the mode does not read, or it
        is damaged (said in the log: the next write replaces it)."""
        if self.mode not in ("read_write", "read"):
            return None
        folder = self.folder(key)
        entry_path = folder / "entry.json"
        if not entry_path.exists():
            return None
        try:
            result = self._checked(key, folder, entry_path)
        except (InvalidImageError, InputValidationError, OSError, ValueError) as error:
            self._say("result cache entry %s is damaged and is ignored (it will be replaced): %s", key, error)
            return None
        now = time.time() if now is None else now
        if self.max_age is not None and now - result.created_at > self.max_age:
            return None
        return result

    def _checked(self, key: str, folder: Any, entry_path: Any) -> CachedResult:
        from airflow_provider_sam3.guards.files import confined, read_regular_file
        from airflow_provider_sam3.guards.structure import parse_rendered

        where = f"result cache entry {key}"
        raw = read_regular_file(confined(entry_path, folder, where), where, MAX_ENTRY_BYTES, setting=None)
        record = parse_rendered(raw.decode("utf-8"), where)
        if not isinstance(record, dict) or record.get("format") != 1 or record.get("key") != key:
            raise ValueError("its entry.json is not an entry of this key")
        files: dict[str, Any] = {}
        checks: dict[str, tuple[int, str]] = {}
        writer = record.get("writer")
        if not isinstance(writer, str) or not re.fullmatch(r"[0-9a-f]{32}", writer):
            raise ValueError(f"its writer {str(writer)[:80]!r} is not a writer's folder")
        for item in _list(record.get("files"), "files"):
            name, size, digest = _file_record(item)
            path = folder / writer / name
            files[name] = _as_path(confined(path, folder, where))
            _verify_file(files[name], where, name, size, digest)
            checks[name] = (size, digest)
        return CachedResult(
            key=key,
            endpoint_id=_text(record.get("endpoint_id"), "endpoint_id"),
            request_id=_request_id(record.get("request_id")),
            payload=_mapping(record.get("payload"), "payload"),
            cost_usd=_number(record.get("cost_usd"), "cost_usd", optional=True),
            created_at=_number(record.get("created_at"), "created_at"),
            files=files,
            sources=_sources(record.get("sources"), files),
            checks=checks,
        )

    # ------------------------------------------------------------------ writing

    def put(
        self,
        key: str,
        *,
        endpoint_id: str,
        request_id: str,
        payload: Mapping[str, Any],
        files: Mapping[str, bytes],
        cost_usd: float | None,
        sources: Mapping[str, str] | None = None,
        now: float | None = None,
    ) -> CachedResult | None:
        """Add ``key``'s entry (files first, ``entry.json`` last), unless the mode does not write. A task writes
        only after paying for a miss, so an entry already there is one it could not use (damaged in a way only its
        use shows, too old, or written meanwhile by a task that paid too): it is replaced, the last writer's entry
        stays, and a reader of the one before still finds that writer's files."""
        if self.mode == "read":
            return None
        folder, writer = self.folder(key), uuid.uuid4().hex
        records = []
        for name, data in files.items():
            if not _NAME.fullmatch(name) or ".." in name:
                raise ValueError(f"{name!r} is not a cache file name")
            _write_once(folder / writer / name, data)
            records.append({"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        record = {
            "format": 1,
            "key": key,
            "endpoint_id": endpoint_id,
            "request_id": request_id,
            "payload": dict(payload),
            "sources": dict(sources or {}),
            "cost_usd": cost_usd,
            "created_at": time.time() if now is None else now,
            "writer": writer,
            "files": records,
        }
        encoded = json.dumps(record, allow_nan=False, sort_keys=True).encode("utf-8")
        if len(encoded) > MAX_ENTRY_BYTES:
            raise ValueError(f"its entry would be {len(encoded):,} bytes, more than the {MAX_ENTRY_BYTES:,} read back")
        _write_once(folder / "entry.json", encoded)
        return ResultCache(self.root, mode="read", log=self.log).get(key)

    # ------------------------------------------------------------------ claims

    def claim(self, key: str, owner: str, *, lease: float, now: float | None = None) -> str | None:
        """Claim ``key`` for ``owner`` (a task about to pay for it) for ``lease`` seconds: ``None`` when claimed,
        else the owner holding it. Exclusive on local and shared POSIX folders (a hard link to the written claim
        is created only where none exists); on object storage a claim narrows the window in which two tasks pay
        for one key but cannot close it. An expired claim is taken over; two tasks taking over one expired claim
        at the same moment may both pay."""
        now = time.time() if now is None else now
        path = self.folder(key) / "claim.json"
        held = self._claim_holder(path, now)
        if held is not None and held != owner:
            return held
        record = json.dumps({"owner": owner, "until": now + lease}).encode("utf-8")
        from airflow_provider_sam3.guards.files import local_path

        local = local_path(str(path))
        if local is None or held == owner:  # on object storage, or renewing its own claim
            _write_once(path, record)
            return None
        os.makedirs(os.path.dirname(local), exist_ok=True)
        for attempt in range(2):
            if _link_new(local, record):
                return None
            holder = self._claim_holder(path, now)
            if holder is not None or attempt:
                return holder or "another task"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(local)  # expired or unreadable: taken over
        return "another task"

    def release(self, key: str, owner: str) -> None:
        """Drop ``owner``'s claim on ``key`` (after its entry is written, or when it gave up)."""
        path = self.folder(key) / "claim.json"
        if self._claim_holder(path, time.time()) == owner:
            path.unlink(missing_ok=True)

    def _claim_holder(self, path: Any, now: float) -> str | None:
        """The owner of a live claim at ``path``; ``None`` when there is none, it expired or it is unreadable."""
        try:
            if not path.exists():
                return None
            with path.open("rb") as handle:
                record = json.loads(handle.read(4096))
            owner, until = record["owner"], float(record["until"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return owner if isinstance(owner, str) and until > now else None

    def _say(self, message: str, *args: Any) -> None:
        if self.log is not None:
            self.log.warning(message, *args)


def _as_path(root: Any) -> Any:
    """A path object for ``root``: a local ``pathlib.Path``, or an ``ObjectStoragePath`` for a URL."""
    if not isinstance(root, str):
        return root
    from pathlib import Path

    from airflow_provider_sam3.guards.files import local_path

    local = local_path(root)
    if local is not None:
        return Path(local)
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(root)


def _link_new(local: str, data: bytes) -> bool:
    """Create ``local`` holding ``data`` only if nothing is there (a hard link to a file written whole first, so a
    reader never sees half of it); whether it was created."""
    temporary = f"{local}.{uuid.uuid4().hex}.tmp"
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.link(temporary, local)
    except FileExistsError:
        return False
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return True


def _write_once(path: Any, data: bytes) -> None:
    """Write ``data`` at ``path``: a local file under a temporary name then renamed (a reader never sees half of
    it); an object-store file in one write."""
    from airflow_provider_sam3.guards.files import local_path

    local = local_path(str(path))
    if local is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            handle.write(data)
        return
    os.makedirs(os.path.dirname(local), exist_ok=True)
    temporary = f"{local}.{uuid.uuid4().hex}.tmp"
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, local)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _verify_file(path: Any, where: str, name: str, size: int, digest: str) -> None:
    from airflow_provider_sam3.guards.files import open_regular_file

    hasher, read = hashlib.sha256(), 0
    with open_regular_file(path, f"{where}: {name}", MAX_FILE_BYTES, setting=None) as handle:
        if handle.size != size:
            raise ValueError(f"{name} is {handle.size:,} bytes, the entry says {size:,}")
        while chunk := handle.read(_CHUNK):
            read += len(chunk)
            if read > size:
                break
            hasher.update(chunk)
    if read != size or hasher.hexdigest() != digest:
        raise ValueError(f"{name} does not match the sha256 its entry recorded")


def _file_record(item: Any) -> tuple[str, int, str]:
    record = _mapping(item, "files[]")
    name, size, digest = record.get("name"), record.get("size"), record.get("sha256")
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"files[] names {str(name)[:80]!r}, not a cache file name")
    if type(size) is not int or not 0 <= size <= MAX_FILE_BYTES:
        raise ValueError(f"{name}: size {size!r} is not a file size")
    if not isinstance(digest, str) or not _KEY.fullmatch(digest):
        raise ValueError(f"{name}: {str(digest)[:80]!r} is not a sha256")
    return name, size, digest


def _sources(value: Any, files: Mapping[str, Any]) -> dict[str, str]:
    sources = _mapping(value, "sources")
    for url, name in sources.items():
        if not isinstance(name, str) or name not in files or len(url) > 8192:
            raise ValueError(f"sources names {str(name)[:80]!r}, which is not a file of the entry")
    return sources


def _list(value: Any, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{field} is not a list")
    return value


def _mapping(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{field} is not a mapping")
    return value


def _request_id(value: Any) -> str:
    """A request id as fal issues them (it names a folder under ``output_path`` when a hit is copied)."""
    text = _text(value, "request_id")
    if not _NAME.fullmatch(text) or ".." in text:
        raise ValueError(f"request_id {text[:80]!r} is not a request id fal issues")
    return text


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 200 or not value.isprintable():
        raise ValueError(f"{field} is not a short printable text")
    return value


def _number(value: Any, field: str, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{field} {value!r} is not a finite number of at least 0")
    return float(value)
