"""Reading a batch's manifest in tests: each batch task writes in its own folder under output_path."""

from __future__ import annotations

import json
from pathlib import Path


def find_manifest(out) -> Path:
    """The one ``manifest.jsonl`` under ``out`` (fails when there is none or several)."""
    found = sorted(Path(out).rglob("manifest.jsonl"))
    assert len(found) == 1, f"expected one manifest under {out}, found {found}"
    return found[0]


def read_manifest(path) -> list[dict]:
    return [json.loads(line) for line in Path(str(path).removeprefix("file://")).read_text().splitlines()]


def manifest_rows(out) -> list[dict]:
    """The rows of the one manifest under ``out``."""
    return read_manifest(find_manifest(out))


def output_file(row: dict, mask: dict) -> Path:
    """Where a manifest row's mask was stored."""
    return Path(mask["location"].removeprefix("file://"))
