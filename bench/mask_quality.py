"""Mask quality of the emulator's classical segmenter on the demo's real photos: IoU with hand-drawn references.

    python bench/mask_quality.py            # print the table
    python bench/mask_quality.py --write    # and write it into docs/mask-quality.md

For each photo the demo ships (``airflow_provider_sam3.samples.demo_photos``, read from scikit-image's installed
data), the segmenter is asked the way the demo asks it (its text prompt, then its box), through the same path as the
emulator's ``image`` app, and its first mask is compared with the polygon drawn by hand in
``bench/reference_masks.json``. A change to the segmenter shows here; ``tests/integration/emulator/
test_mask_quality.py`` fails until the committed table matches.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
REFERENCES = REPO / "bench" / "reference_masks.json"
DOC = REPO / "docs" / "mask-quality.md"
TABLE_START = "<!-- mask-quality table: written by bench/mask_quality.py --write -->"
TABLE_END = "<!-- end of mask-quality table -->"


def reference_mask(polygon: list[list[float]], size: tuple[int, int]) -> np.ndarray:
    picture = Image.new("1", size, 0)
    ImageDraw.Draw(picture).polygon([tuple(point) for point in polygon], fill=1)
    return np.asarray(picture, dtype=bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def measure() -> list[dict]:
    """One row per demo photo: its name, prompt, and the IoU of the text-prompt and box-prompt masks."""
    from airflow_provider_sam3.samples.demo_photos import DEMO_PHOTOS
    from airflow_provider_sam3.testing.emulator.segmenter import BoxSpec, segment

    references = json.loads(REFERENCES.read_text())["photos"]
    rows = []
    for photo in DEMO_PHOTOS:
        image = Image.open(photo.path()).convert("RGB")
        truth = reference_mask(references[photo.name]["polygon"], image.size)
        by_text = segment(image, prompt=photo.prompt)
        by_box = segment(image, boxes=[BoxSpec(*photo.box)])
        rows.append(
            {
                "photo": photo.name,
                "prompt": photo.prompt,
                "text": round(iou(by_text[0].mask, truth), 2) if by_text else 0.0,
                "box": round(iou(by_box[0].mask, truth), 2) if by_box else 0.0,
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| photo | prompt | IoU, text prompt | IoU, box prompt |", "|---|---|---|---|"]
    lines += [f"| {r['photo']} | {r['prompt']} | {r['text']:.2f} | {r['box']:.2f} |" for r in rows]
    return "\n".join(lines)


def committed_table() -> str:
    text = DOC.read_text()
    return text[text.index(TABLE_START) + len(TABLE_START) : text.index(TABLE_END)].strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="write the table into docs/mask-quality.md")
    args = parser.parse_args()
    import time

    started = time.process_time()
    rows = measure()
    calls = 2 * len(rows)
    current = table(rows)
    print(current)
    each = (time.process_time() - started) * 1000 / calls
    print(f"\n{calls} segmenter calls, {each:.1f} ms of CPU each (photo decoding included)")
    if args.write:
        text = DOC.read_text()
        head, rest = text.split(TABLE_START, 1)
        DOC.write_text(f"{head}{TABLE_START}\n{current}\n{TABLE_END}{rest.split(TABLE_END, 1)[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
