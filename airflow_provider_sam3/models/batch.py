"""A batch of images as plain JSON: one entry per image (what was asked, which request answers it, how it ended),
the manifest row each image gets, and the summary the batch task returns to XCom.

Entries are what the batch operator persists in the task state store, so they are kept small: short keys, no
image bytes, no result payloads. Pure Python: no Airflow, no pydantic, cheap to import.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "BATCH_SCHEMA_VERSION",
    "BatchEntry",
    "EntryState",
    "FINAL_STATES",
    "MANIFEST_SCHEMA_VERSION",
    "failure_row",
    "item_key",
    "repeat_row",
    "request_id_of",
    "success_row",
]

BATCH_SCHEMA_VERSION = 3
MANIFEST_SCHEMA_VERSION = 1

EntryState = Literal["pending", "sending", "submitted", "completed", "done", "failed", "invalid", "repeat"]
"""``pending``: to submit. ``sending``: a try reserved it (durably) and is sending it, or was when it stopped: fal may
have created a request whose id only that try saw (``batch.unrecorded`` resolves it). ``submitted``: at fal,
waiting. ``completed``: fal finished it without error (billed) but its result is not stored yet: it is fetched again,
never submitted again. ``done``: result stored. ``failed``: no result (``retryable`` says whether a new submission
may help). ``invalid``: refused locally, never sent. ``repeat``: the same image with the same fields as an earlier
row (``repeat_of``); it shares that row's request."""
FINAL_STATES = frozenset({"done", "failed", "invalid", "repeat"})


def item_key(endpoint_id: str, source: str, arguments: dict[str, Any]) -> str:
    """A stable identity for one image of a batch: the same source with the same arguments is the same request.

    Used to find a previous try's request again, whatever the order of the inputs this time.
    """
    text = json.dumps([endpoint_id, source, arguments], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


@dataclass(slots=True)
class BatchEntry:
    """One image of a batch and its fate.

    ``source`` is what the user gave (path, URL or ObjectStoragePath as a string), ``arguments`` the per-image
    fields (prompt, boxes, ...) on top of the batch's shared ones. ``submissions`` counts every submission that may
    have created a request (all tries); ``retries`` the submit attempts made after a failure (the resubmissions:
    counted when sent, not when put back in line); ``billed`` the requests fal
    completed without error (what it bills); ``fetch_failures`` failed attempts to fetch or store a completed result.
    ``reserved_at`` is when the last submit was reserved (``sending``); ``unseen`` counts reservations whose outcome no
    try saw (the try died mid-call: fal may have created a request nobody knows). ``version`` grows with every journal
    write of the entry, so a journal row newer than its shard is told apart from an older one. ``confined``: listed
    from a local folder (``batch.listing.BatchImage.confined``). ``cache_key``: the request's key in the result
    cache, when one is used; ``cache_hit``: the image was answered from it (``request_id`` is then the request that
    paid, in another task or run).
    """

    index: int
    source: str
    arguments: dict[str, Any] = field(default_factory=dict)
    conn_id: str | None = None
    width: int | None = None
    height: int | None = None
    request_id: str | None = None
    submitted_at: float | None = None
    submissions: int = 0
    retries: int = 0
    urls: dict[str, str] | None = None
    state: EntryState = "pending"
    error: str | None = None
    error_class: str | None = None
    retryable: bool = False
    billed: int = 0
    fetch_failures: int = 0
    repeat_of: int | None = None
    reserved_at: float | None = None
    unseen: int = 0
    version: int = 0
    confined: bool = False
    cache_key: str | None = None
    cache_hit: bool = False

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def image(self) -> dict[str, Any]:
        """The input-image description the result documents carry."""
        return {"source": self.source, "width": self.width, "height": self.height}

    def to_json(self) -> dict[str, Any]:
        data = {
            "i": self.index,
            "s": self.source,
            "a": self.arguments or None,
            "c": self.conn_id,
            "w": self.width,
            "h": self.height,
            "r": self.request_id,
            "t": self.submitted_at,
            "n": self.submissions,
            "rs": self.retries or None,
            "u": self.urls,
            "st": self.state,
            "e": self.error,
            "ec": self.error_class,
            "rt": self.retryable or None,
            "b": self.billed or None,
            "ff": self.fetch_failures or None,
            "ro": self.repeat_of,
            "ra": self.reserved_at,
            "us": self.unseen or None,
            "v": self.version or None,
            "cf": self.confined or None,
            "ck": self.cache_key,
            "ch": self.cache_hit or None,
        }
        return {k: v for k, v in data.items() if v is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BatchEntry:
        return cls(
            index=data["i"],
            source=data["s"],
            arguments=data.get("a") or {},
            conn_id=data.get("c"),
            width=data.get("w"),
            height=data.get("h"),
            request_id=data.get("r"),
            submitted_at=data.get("t"),
            submissions=data.get("n", 0),
            retries=data.get("rs", 0),
            urls=data.get("u"),
            state=data.get("st", "pending"),
            error=data.get("e"),
            error_class=data.get("ec"),
            retryable=bool(data.get("rt")),
            billed=data.get("b", 0),
            fetch_failures=data.get("ff", 0),
            repeat_of=data.get("ro"),
            reserved_at=data.get("ra"),
            unseen=data.get("us", 0),
            version=data.get("v", 0),
            confined=bool(data.get("cf")),
            cache_key=data.get("ck"),
            cache_hit=bool(data.get("ch")),
        )

    def fail(self, error: str, error_class: str, *, retryable: bool = False, state: EntryState = "failed") -> None:
        self.state, self.error, self.error_class, self.retryable = state, error, error_class, retryable

    def completed_unstored(self, error: str, error_class: str) -> None:
        """fal completed the request, but its result could not be fetched or stored: fetch it again later."""
        self.state, self.error, self.error_class, self.retryable = "completed", error, error_class, False
        self.fetch_failures += 1


def request_id_of(entry: BatchEntry) -> str:
    """The id of an entry's request at fal: always set once the entry was submitted (state submitted, completed)."""
    assert entry.request_id is not None, f"images[{entry.index}] has no request at fal"
    return entry.request_id


def failure_row(entry: BatchEntry) -> dict[str, Any]:
    """The manifest row of an image that ended without a result."""
    return {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "index": entry.index,
        "source": entry.source,
        "arguments": entry.arguments or None,
        "status": entry.state,
        "request_id": entry.request_id,
        "submissions": entry.submissions,
        "error": entry.error,
        "error_class": entry.error_class,
    }


def repeat_row(entry: BatchEntry, first: dict[str, Any]) -> dict[str, Any]:
    """The row of an image that repeats an earlier row (same image, same fields): that row's request and result."""
    return {
        **first,
        "index": entry.index,
        "source": entry.source,
        "arguments": entry.arguments or None,
        "submissions": 0,
        "cost_usd": 0.0 if first.get("cost_usd") is not None else None,  # paid once, on the row it repeats
        "repeat_of": entry.repeat_of,
    }


def success_row(entry: BatchEntry, document: dict[str, Any]) -> dict[str, Any]:
    """The manifest row of an image with a result: where its outputs are, and each mask's score and boxes.

    ``document`` is the image's XCom result document (``models.results``) after its outputs were copied.
    """
    row: dict[str, Any] = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "index": entry.index,
        "source": entry.source,
        "arguments": entry.arguments or None,
        "status": "succeeded",
        "request_id": entry.request_id,
        "submissions": entry.submissions,
        "error": None,
        "error_class": None,
        "output_location": document.get("output_location"),
        "cost_usd": document.get("cost_usd"),
        "image": document.get("image"),
    }
    if "masks" in document:
        row["masks"] = [
            {
                "location": mask.get("stored_url") or mask.get("url"),
                "rle": mask.get("rle"),
                "score": mask.get("score"),
                "box": mask.get("box"),
                "pixel_box": mask.get("pixel_box"),
            }
            for mask in document["masks"]
        ]
        row["mask_count"] = len(row["masks"])
        row["scores"] = [mask["score"] for mask in row["masks"]]
    if document.get("cache"):
        row["cache"] = document["cache"]
    if document.get("kind") == "sam3.embedding":
        row["embedding"] = {k: document.get(k) for k in ("stored_url", "byte_size", "sha256")}
    return row
