"""In-memory files served by the emulator: generated outputs (expiring, under ``/media``) and hosted inputs
(kept until reset, under ``/inputs``).

Generated outputs are kept within a byte budget: when a new one would exceed it, the oldest ones expire first, as
fal's own retention lets old media go (a URL that expired answers 404, as fal's does). So the emulator's memory
stays flat however many requests it serves.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

__all__ = ["INPUTS_PREFIX", "MEDIA_PREFIX", "MediaStore", "StoredFile"]

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

    def __init__(self, base_url: str, budget_bytes: Callable[[], int] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._files: dict[tuple[str, str], StoredFile] = {}
        self._budget = budget_bytes
        self._media_order: deque[tuple[str, str]] = deque()
        self.media_bytes = 0
        """Bytes of generated outputs held now (at most the budget, unless one file alone is larger)."""
        self.evicted = 0
        """Generated outputs expired early to stay within the budget, since the last ``clear``."""

    def put(
        self,
        data: bytes,
        file_name: str,
        content_type: str,
        *,
        ttl_s: float | None,
        prefix: str = MEDIA_PREFIX,
        token: str | None = None,
    ) -> str:
        """Store ``data`` and return its URL; ``ttl_s=None`` keeps it until ``clear``. ``token``: the URL's token
        when it was handed out before the data arrived (a multipart upload)."""
        token = token or secrets.token_urlsafe(12)
        expires_at = None if ttl_s is None else time.monotonic() + ttl_s
        self._files[(prefix, token)] = StoredFile(bytes(data), file_name, content_type, expires_at)
        if prefix == MEDIA_PREFIX:
            self._media_order.append((prefix, token))
            self.media_bytes += len(data)
            self._keep_within_budget()
        return f"{self.base_url}/{prefix}/{token}/{quote(file_name)}"

    def _keep_within_budget(self) -> None:
        budget = self._budget() if self._budget is not None else None
        while budget is not None and self.media_bytes > budget and len(self._media_order) > 1:
            if self._drop(self._media_order.popleft()):
                self.evicted += 1

    def _drop(self, key: tuple[str, str]) -> bool:
        item = self._files.pop(key, None)
        if item is not None and key[0] == MEDIA_PREFIX:
            self.media_bytes -= len(item.data)
        return item is not None

    def get(self, prefix: str, token: str, file_name: str) -> StoredFile | None:
        item = self._files.get((prefix, token))
        if item is None or item.file_name != file_name:
            return None
        if item.expired(time.monotonic()):
            self._drop((prefix, token))
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
            self._drop(key)
        while self._media_order and self._media_order[0] not in self._files:
            self._media_order.popleft()
        return len(dead)

    def clear(self) -> None:
        self._files.clear()
        self._media_order.clear()
        self.media_bytes = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._files)
