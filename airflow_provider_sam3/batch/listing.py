"""What a batch is made of: the rendered ``images`` parameter turned into an ordered list of images to segment.

Accepted: a list (from the DAG or an XCom) whose items are URLs, paths, ``ObjectStoragePath`` objects or mappings
``{"image": <source>, <per-image fields>...}``; a folder (every image file in it); a glob (``/data/*.jpg``,
``s3://conn@bucket/photos/**/*.png``); or one image. Listing happens once, on the first try: the batch's
entries are persisted, so files that arrive later do not change a batch that is already running.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_sam3.exceptions import InputValidationError
from airflow_provider_sam3.guards.structure import check_structure, parse_rendered

if TYPE_CHECKING:
    from airflow_provider_sam3.models.batch import BatchEntry

__all__ = ["BatchImage", "GLOB_CHARACTERS", "IMAGE_SUFFIXES", "resolve_images", "warm_storage"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".avif")
GLOB_CHARACTERS = "*?["
_ACCEPTED = (
    "a list of image URLs, paths or ObjectStoragePaths (or mappings {'image': ..., 'prompt': ...}), a folder, "
    "a glob such as '/data/photos/*.jpg' or 's3://conn_id@bucket/photos/*.png', or an XCom holding one of these"
)


@dataclass(frozen=True)
class BatchImage:
    """One image of a batch: its source (as a string, plus the storage connection for object-store paths)
    and the fields given for this image alone."""

    source: str
    conn_id: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    confined: bool = False
    """Listed from a local folder: ``source`` is the file's real path inside it, and must still be when read (a
    link swapped in since would lead out of the folder)."""

    def opened(self) -> Any:
        """What ``prepare_image`` reads: the string itself, or an ObjectStoragePath for object storage. A file
        listed from a folder is checked again to be its own real path (``confined``)."""
        if "://" in self.source and self.source.split("://", 1)[0].lower() not in ("http", "https", "file"):
            from airflow.sdk import ObjectStoragePath

            return ObjectStoragePath(self.source, conn_id=self.conn_id)
        if self.confined and os.path.realpath(self.source) != self.source:
            raise InputValidationError(
                "images",
                f"{self.source!r} was a file in the folder given when the batch was listed, and is now a link to "
                f"{os.path.realpath(self.source)!r}; only files inside the folder are read.",
            )
        return self.source


def resolve_images(images: Any, *, field_name: str = "images") -> list[BatchImage]:
    """The batch's images in a stable order; raise ``InputValidationError`` naming the item when one is unusable."""
    images = _parsed(images, field_name)
    if images is None or (isinstance(images, (list, tuple, str)) and not images):
        raise InputValidationError(field_name, "is empty: a batch needs at least one image.", allowed=_ACCEPTED)
    if isinstance(images, (list, tuple)):
        resolved: list[BatchImage] = []
        for position, item in enumerate(images):
            resolved.extend(_item(item, f"{field_name}[{position}]"))
        if not resolved:
            raise InputValidationError(field_name, "names no image files.", allowed=_ACCEPTED)
        return resolved
    _refuse_a_missing_path(images, field_name)
    found = _item(images, field_name)
    if not found:
        raise InputValidationError(
            field_name,
            f"{_describe(images)} matches no image files (looked for {', '.join(IMAGE_SUFFIXES)}).",
            allowed=_ACCEPTED,
        )
    return found


def _refuse_a_missing_path(images: Any, field_name: str) -> None:
    """The batch's one local path names nothing: say so (a folder is what is usually meant), not that some file of
    it is missing. In a list, a missing file is that row's problem (recorded ``invalid`` with ``skip_invalid``)."""
    if not isinstance(images, str) or "://" in images or any(ch in images for ch in GLOB_CHARACTERS):
        return
    text = os.path.expanduser(images.strip())
    if os.path.isabs(text) and not os.path.lexists(text):
        kind = "image file" if text.lower().endswith(IMAGE_SUFFIXES) else "folder or file"
        raise InputValidationError(
            field_name,
            f"{images.strip()!r} does not exist: no {kind} by that name on this worker; give an existing folder of "
            "images, an image file, or a list of them (a shared folder must be mounted on every worker).",
            allowed=_ACCEPTED,
        )


def _parsed(images: Any, field_name: str) -> Any:
    """A list rendered by a Jinja template arrives as its text; read it back. Either way its depth and size are
    bounded (``guards.structure``) before anything walks it."""
    if isinstance(images, str) and images.strip()[:1] == "[":
        return parse_rendered(images.strip(), field_name)
    check_structure(images, field_name)
    return images


def _item(item: Any, where: str) -> list[BatchImage]:
    if isinstance(item, dict):
        arguments = dict(item)
        given = [key for key in ("image", "image_url") if key in arguments]
        if len(given) != 1:
            raise InputValidationError(
                where,
                "must name its image once, under 'image' (or 'image_url'), next to its own fields such as "
                f"'prompt'; got keys {sorted(arguments)}.",
            )
        source = arguments.pop(given[0])
        return [BatchImage(image.source, image.conn_id, arguments) for image in _sources(source, where, expand=False)]
    return _sources(item, where, expand=True)


def _sources(source: Any, where: str, *, expand: bool) -> list[BatchImage]:
    if isinstance(source, os.PathLike) and not hasattr(source, "protocol"):
        source = os.fspath(source)
    if isinstance(source, str):
        text = source.strip()
        if not text:
            raise InputValidationError(where, "is an empty string; give an image URL or path.", allowed=_ACCEPTED)
        scheme = text.split("://", 1)[0].lower() if "://" in text else ""
        if scheme in ("http", "https") or text[:5].lower() == "data:":
            return [BatchImage(text)]
        if not scheme and not os.path.isabs(os.path.expanduser(text)):
            raise InputValidationError(
                where,
                f"{text!r} is a relative path; workers differ in working directory, so give an absolute path or a URL.",
                allowed=_ACCEPTED,
            )
        if expand and (any(ch in text for ch in GLOB_CHARACTERS) or _is_local_dir(text)):
            return _listed(_storage_path(text), where)
        path = _storage_path(text)
        return [BatchImage(_source_text(path), getattr(path, "conn_id", None))]
    if hasattr(source, "protocol") and callable(getattr(source, "read_bytes", None)):
        if expand and (any(ch in str(source) for ch in GLOB_CHARACTERS) or _is_dir(source)):
            return _listed(source, where)
        return [BatchImage(_source_text(source), getattr(source, "conn_id", None))]
    raise InputValidationError(
        where,
        f"got {type(source).__name__}; bytes and PIL images cannot be batched (they cannot be persisted "
        "for a retry); save them to storage and pass the paths.",
        allowed=_ACCEPTED,
    )


def _storage_path(text: str) -> Any:
    from airflow.sdk import ObjectStoragePath

    if "://" not in text:
        text = "file://" + os.path.abspath(os.path.expanduser(text))
    return ObjectStoragePath(text)


def _source_text(path: Any) -> str:
    """A local file as its plain path (what users recognise in a manifest); object storage as its URL."""
    text = str(path)
    return text[len("file://") :] if text.startswith("file://") else text


def _is_local_dir(text: str) -> bool:
    if text.startswith("file://"):
        text = text[len("file://") :]
    elif "://" in text:
        return False
    return os.path.isdir(os.path.expanduser(text))


def _is_dir(path: Any) -> bool:
    try:
        return bool(path.is_dir())
    except Exception:  # noqa: BLE001 - an unreachable store is reported when the file is read
        return False


def _listed(path: Any, where: str) -> list[BatchImage]:
    """Image files in a folder (not recursive) or matching a glob, sorted by name."""
    text = str(path)
    try:
        if any(ch in text for ch in GLOB_CHARACTERS):
            parts = text.split("/")
            first = next(i for i, part in enumerate(parts) if any(ch in part for ch in GLOB_CHARACTERS))
            base = type(path)("/".join(parts[:first]) or "/", conn_id=getattr(path, "conn_id", None))
            matches = list(base.glob("/".join(parts[first:])))
        else:
            matches = list(path.iterdir())
    except Exception as error:  # noqa: BLE001 - fsspec raises many kinds
        raise InputValidationError(
            where, f"could not list {_describe(path)}: {type(error).__name__}: {error}.", allowed=_ACCEPTED
        ) from error
    files = sorted(
        (match for match in matches if str(match).lower().endswith(IMAGE_SUFFIXES) and not _is_dir(match)), key=str
    )
    if getattr(path, "protocol", "file") in ("", "file", "local"):
        root = _local_root(text)
        return [BatchImage(_confined(_source_text(match), root, where), confined=True) for match in files]
    return [BatchImage(_source_text(match), getattr(match, "conn_id", None)) for match in files]


def _local_root(listed: str) -> str:
    """The real path of the folder a local listing reads: the folder itself, or a glob's folder before its first
    pattern."""
    text = _source_text_of(listed)
    parts = text.split("/")
    first = next((i for i, part in enumerate(parts) if any(ch in part for ch in GLOB_CHARACTERS)), len(parts))
    return os.path.realpath("/".join(parts[:first]) or "/")


def _confined(source: str, root: str, where: str) -> str:
    """A listed file's real path, refused by name when a link leads it out of the folder given."""
    real = os.path.realpath(source)
    if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
        raise InputValidationError(
            where,
            f"{source!r} is a link to {real!r}, outside {root!r}: a folder's files are read only inside it (a link out "
            "of a shared folder would send a file its owner never meant to share). Remove the link, or list the "
            "file explicitly.",
        )
    return real


def _source_text_of(text: str) -> str:
    return text[len("file://") :] if text.startswith("file://") else text


def _describe(value: Any) -> str:
    text = str(value)
    return repr(text if len(text) <= 120 else text[:117] + "...")


def warm_storage(pending: list[BatchEntry], folder: Any) -> None:
    """Resolve each object store a batch will read or write (one connection lookup each) before anything runs
    concurrently: a worker thread looking a connection up holds the supervisor channel, and a task state store
    write from the event loop at that moment is refused."""
    stores: dict[tuple[str, str | None], BatchEntry] = {}
    for entry in pending:
        scheme = entry.source.split("://", 1)[0].lower() if "://" in entry.source else ""
        if scheme not in ("", "http", "https", "file", "data"):
            stores.setdefault((scheme, entry.conn_id), entry)
    for entry in stores.values():
        getattr(BatchImage(entry.source, entry.conn_id).opened(), "fs", None)
    getattr(folder, "fs", None)
