"""Files the provider reads, local or on object storage: regular files only, their size capped before a byte is
read and again while reading, and, where a folder was given, confined to it with symlinks resolved first.

A FIFO named ``photo.png`` would hang the task, a device (``/dev/zero``) would be read forever, a symlink out of a
shared input folder would send a file its owner never meant to share, and a document naming ``/etc/passwd`` as
its mask would make a reader return it. Every path that reads a file the user or a document named goes through
``read_regular_file`` (or ``open_regular_file`` to read a header), refusing these by name before anything is sent.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from airflow_provider_sam3.exceptions import InvalidImageError

__all__ = [
    "DEFAULT_MAX_INPUT_BYTES",
    "MiB",
    "check_size",
    "confined",
    "file_kind",
    "local_path",
    "SizedFile",
    "open_regular_file",
    "read_regular_file",
    "regular_file_size",
]

MiB = 1024 * 1024
DEFAULT_MAX_INPUT_BYTES = 64 * MiB
"""Largest input file accepted. Photos are 1 to 10 MB; 64 MiB leaves room for large PNG scans while refusing
video files, disk images and runaway files before any is read."""


def local_path(location: str) -> str | None:
    """The filesystem path of a local location (``/abs/path``, ``~/path`` or ``file:///abs/path``), else None."""
    if location.startswith("file://"):
        parts = urlsplit(location)
        return unquote(parts.path) if parts.netloc in ("", "localhost") else None
    if "://" in location or location[:5].lower() == "data:":
        return None
    return os.path.expanduser(location)


def file_kind(mode: int) -> str:
    """What a file that is not a regular file is, in words."""
    kinds = [
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def regular_file_size(opened: Any, where: str) -> int:
    """The size of a regular file (a local path, or an object-store path with ``stat()``); anything else (a
    folder, FIFO, device, socket, a missing file) is refused, naming ``where``."""
    if _is_path(opened):
        name = os.fspath(opened)
        try:
            info = os.stat(os.path.expanduser(name))  # follows symlinks: a link to /dev/zero is a device
        except FileNotFoundError:
            raise InvalidImageError(
                where, f"the file {name!r} does not exist; give the path of an existing file."
            ) from None
        except OSError as error:
            raise InvalidImageError(
                where, f"{name!r} cannot be read ({error.strerror or error}); give the path of an existing file."
            ) from None
        if not stat.S_ISREG(info.st_mode):
            raise InvalidImageError(
                where,
                f"{name!r} is {file_kind(info.st_mode)}, not a regular file; only regular files are read "
                "(reading a FIFO would hang the task, a device would be read forever).",
            )
        return info.st_size
    try:
        info = opened.stat()
    except Exception as error:  # noqa: BLE001 - fsspec raises many kinds
        raise InvalidImageError(
            where, f"{opened} cannot be read ({type(error).__name__}: {error}); give the path of an existing file."
        ) from None
    kind = _get(info, "type")
    if kind not in (None, "file"):
        raise InvalidImageError(where, f"{opened} is a {kind}, not a file; give the path of a file.")
    size = _get(info, "size")
    if size is None:
        size = _get(info, "st_size")
    return int(size) if size is not None else 0


def check_size(size: int, where: str, max_bytes: int, *, setting: str | None = "max_input_bytes") -> None:
    """Refuse a file larger than ``max_bytes``, naming ``where`` and the setting that raises the cap (or, where
    there is none, what else to do)."""
    if size > max_bytes:
        if setting is None:
            advice = "downscale or recompress it, or put it in storage fal can read and pass its https URL."
            raise InvalidImageError(where, f"is {size:,} bytes, more than the {max_bytes:,} read locally; {advice}")
        raise InvalidImageError(
            where,
            f"is {size:,} bytes, more than {setting}={max_bytes:,}; downscale or recompress it, or raise {setting}.",
        )


@contextmanager
def open_regular_file(
    opened: Any, where: str, max_bytes: int, *, setting: str | None = "max_input_bytes"
) -> Iterator[SizedFile]:
    """A binary handle on a regular file within ``max_bytes`` (to read a header); its ``size`` is the size
    checked. A local file is opened without blocking and checked on the open descriptor, so a file swapped for a
    FIFO or a device after it was listed is refused, never waited on."""
    if not _is_path(opened):
        size = regular_file_size(opened, where)
        check_size(size, where, max_bytes, setting=setting)
        with opened.open("rb") as handle:
            yield SizedFile(handle, size)
        return
    regular_file_size(opened, where)  # the named reasons: missing, a folder, a FIFO, a device
    name = os.path.expanduser(os.fspath(opened))
    try:
        descriptor = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise InvalidImageError(
            where, f"{name!r} cannot be read ({error.strerror or error}); give the path of an existing file."
        ) from None
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidImageError(where, f"{name!r} is {file_kind(info.st_mode)}, not a regular file.")
        os.set_blocking(descriptor, True)
        check_size(info.st_size, where, max_bytes, setting=setting)
        yield SizedFile(handle, info.st_size)


class SizedFile:
    """A binary file handle and the size checked when it was opened."""

    def __init__(self, handle: IO, size: int) -> None:
        self.file, self.size = handle, size

    def read(self, count: int = -1) -> bytes:
        return self.file.read(count)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)


def read_regular_file(opened: Any, where: str, max_bytes: int, *, setting: str | None = "max_input_bytes") -> bytes:
    """The bytes of a regular file within ``max_bytes``; anything else is refused naming ``where`` before a byte
    is read, and a file that grew since it was checked stops at the cap."""
    with open_regular_file(opened, where, max_bytes, setting=setting) as handle:
        data = handle.read(handle.size + 1)  # read(n) reserves n bytes up front: what stat said, never the cap
        if len(data) > handle.size:  # it grew since: read on, to the cap
            data += handle.read(max_bytes + 1 - len(data))
    check_size(len(data), where, max_bytes, setting=setting)
    return data


def confined(location: Any, root: Any, where: str) -> Any:
    """``location`` if it lies inside the folder ``root`` (symlinks resolved on local storage; on object storage
    the same protocol and bucket and a path under root's), else ``InvalidImageError`` naming ``where``."""
    if _is_path(location) or local_path(str(location)) is not None:
        path = os.path.realpath(local_path(os.fspath(location)) or os.fspath(location))
        base = os.path.realpath(local_path(os.fspath(root)) or os.fspath(root))
        if path == base or path.startswith(base.rstrip(os.sep) + os.sep):
            return path
    else:
        text, base_text = _remote(str(location)), _remote(str(root))
        if text is not None and base_text is not None and text[0] == base_text[0]:
            if text[1] == base_text[1] or text[1].startswith(base_text[1].rstrip("/") + "/"):
                return location
    raise InvalidImageError(
        where,
        f"{str(location)[:200]!r} is outside {str(root)[:200]!r} (after resolving links); only files inside it are "
        "read.",
    )


def _remote(text: str) -> tuple[str, str] | None:
    """``(scheme://netloc, normalized path)`` of an object-store URL, without a ``conn_id@`` part."""
    parts = urlsplit(text)
    if not parts.scheme or parts.scheme == "file":
        return None
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{netloc}", posixpath.normpath("/" + unquote(parts.path))


def _is_path(opened: Any) -> bool:
    return isinstance(opened, (str, os.PathLike)) and not hasattr(opened, "protocol")


def _get(info: Any, name: str) -> Any:
    return info.get(name) if isinstance(info, dict) else getattr(info, name, None)
