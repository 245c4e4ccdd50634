"""In-memory files served by the emulator: generated outputs (expiring, under ``/media``) and hosted inputs
(kept until reset, under ``/inputs``)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

MEDIA_PREFIX = "media"
INPUTS_PREFIX = "inputs"


@dataclass(frozen=True)
class StoredFile:
    data: bytes
    file_name: str
    content_type: str
    expires_at: float | None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


class MediaStore:
    """Files by (prefix, token, file name); each URL is unguessable and expiry is checked on every read."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._files: dict[tuple[str, str], StoredFile] = {}

    def put(
        self, data: bytes, file_name: str, content_type: str, *, ttl_s: float | None, prefix: str = MEDIA_PREFIX
    ) -> str:
        """Store ``data`` and return its URL; ``ttl_s=None`` keeps it until ``clear``."""
        token = secrets.token_urlsafe(12)
        expires_at = None if ttl_s is None else time.monotonic() + ttl_s
        self._files[(prefix, token)] = StoredFile(bytes(data), file_name, content_type, expires_at)
        return f"{self.base_url}/{prefix}/{token}/{quote(file_name)}"

    def get(self, prefix: str, token: str, file_name: str) -> StoredFile | None:
        item = self._files.get((prefix, token))
        if item is None or item.file_name != file_name:
            return None
        if item.expired(time.monotonic()):
            del self._files[(prefix, token)]
            return None
        return item

    def resolve(self, url: str) -> StoredFile | None:
        """The stored file an emulator URL points at, without a network round trip."""
        if not url.startswith(self.base_url + "/"):
            return None
        parts = urlsplit(url).path.strip("/").split("/")
        if len(parts) != 3:
            return None
        return self.get(parts[0], parts[1], unquote(parts[2]))

    def purge(self) -> int:
        """Drop expired files; returns how many."""
        now = time.monotonic()
        dead = [key for key, item in self._files.items() if item.expired(now)]
        for key in dead:
            del self._files[key]
        return len(dead)

    def clear(self) -> None:
        self._files.clear()

    def __len__(self) -> int:
        return len(self._files)
