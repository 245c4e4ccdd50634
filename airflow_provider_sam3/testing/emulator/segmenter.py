"""Classical, deterministic segmentation standing in for SAM 3 (numpy and Pillow only).

It works on a copy whose longest side is at most ``WORK_SIZE`` pixels and returns masks at the input size
(nearest-neighbour upscaling). Pixels are split in two classes by an Otsu threshold on whichever of grayscale and
saturation separates them better.

- Text prompt (its words are not understood): the connected regions of the class less present on the image
  border, largest first, each at least ``MIN_AREA_FRACTION`` of the image.
- Points with label 1 grow the connected region of their own class; points sharing an ``object_id`` (or having
  none) make one object. Label 0 points cut their region out of every object.
- Boxes (each its own object unless it shares an ``object_id``): the largest connected region of the foreground
  inside the box, the foreground being the class less present on the box border; the whole box when its content
  is uniform.
When points or boxes give objects, the text prompt is not used. Same input, same masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

WORK_SIZE = 256
MIN_AREA_FRACTION = 0.001
MIN_SEPARABILITY = 0.3
"""Below this Otsu separability an image (or box) is treated as uniform: no text regions, whole box."""


@dataclass(frozen=True)
class PointSpec:
    x: float
    y: float
    label: int = 1
    object_id: int | None = None


@dataclass(frozen=True)
class BoxSpec:
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    object_id: int | None = None


@dataclass(frozen=True)
class Segment:
    """One object: a boolean mask at the input size and a deterministic score in (0, 1)."""

    mask: np.ndarray
    score: float


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of a 2-D mask: int32 labels (0 outside, 1..n in raster order of first pixel) and n.

    Horizontal runs are found per row, runs overlapping in adjacent rows are merged by vectorized union-find.
    """
    mask = np.asarray(mask, dtype=bool)
    height, width = mask.shape
    labels = np.zeros(height * width, dtype=np.int32)
    if not mask.any():
        return labels.reshape(height, width), 0
    padded = np.zeros((height, width + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    diff = np.diff(padded, axis=1)
    rows, starts = np.nonzero(diff == 1)
    _, ends = np.nonzero(diff == -1)
    stride = width + 1
    start_key = rows.astype(np.int64) * stride + starts
    end_key = rows.astype(np.int64) * stride + ends
    below = (rows.astype(np.int64) + 1) * stride
    lo = np.searchsorted(end_key, below + starts, side="right")
    hi = np.searchsorted(start_key, below + ends, side="left")
    count = np.maximum(hi - lo, 0)
    a = np.repeat(np.arange(rows.size), count)
    b = np.repeat(lo - (np.cumsum(count) - count), count) + np.arange(int(count.sum()))
    parent = np.arange(rows.size)
    while a.size and (parent[a] != parent[b]).any():
        root_a, root_b = parent[a], parent[b]
        low = np.minimum(root_a, root_b)
        np.minimum.at(parent, root_a, low)
        np.minimum.at(parent, root_b, low)
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    _, component = np.unique(parent, return_inverse=True)
    lengths = ends - starts
    flat_starts = rows.astype(np.int64) * width + starts
    offsets = np.cumsum(lengths) - lengths
    pixels = np.repeat(flat_starts - offsets, lengths) + np.arange(int(lengths.sum()))
    labels[pixels] = np.repeat(component.astype(np.int32) + 1, lengths)
    return labels.reshape(height, width), int(component.max()) + 1


def otsu(values: np.ndarray) -> tuple[int, float]:
    """Otsu threshold of uint8 ``values`` (class 1 is ``> threshold``) and its separability in [0, 1]."""
    hist = np.bincount(np.asarray(values, dtype=np.uint8).ravel(), minlength=256).astype(np.float64)
    total = hist.sum()
    if total == 0:
        return 0, 0.0
    p = hist / total
    levels = np.arange(256, dtype=np.float64)
    omega = np.cumsum(p)
    mu = np.cumsum(p * levels)
    mu_total = mu[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu_total * omega - mu) ** 2 / (omega * (1.0 - omega))
    between = np.nan_to_num(between, nan=0.0, posinf=0.0)
    threshold = int(np.argmax(between))
    variance = float((p * (levels - mu_total) ** 2).sum())
    return threshold, (float(between[threshold]) / variance if variance > 0 else 0.0)


def _border(array: np.ndarray) -> np.ndarray:
    return np.concatenate((array[0], array[-1], array[:, 0], array[:, -1]))


def _two_classes(channels: Sequence[np.ndarray]) -> tuple[np.ndarray, float]:
    """The more separable Otsu split of ``channels``: (class mask, separability)."""
    best: tuple[np.ndarray, float] | None = None
    for channel in channels:
        threshold, separability = otsu(channel)
        if best is None or separability > best[1]:
            best = (channel > threshold, separability)
    assert best is not None
    return best


def _foreground(classes: np.ndarray) -> np.ndarray:
    """The class less present on the border of ``classes``."""
    return ~classes if _border(classes).mean() > 0.5 else classes


def _score(mask: np.ndarray, separability: float) -> float:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    fill = mask.sum() / ((rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1))
    return round(0.5 + 0.45 * min(separability, 1.0) * (0.5 + 0.5 * float(fill)), 4)


class _Work:
    """The downscaled image: channels, the global class split and its components."""

    def __init__(self, image: Image.Image, input_size: tuple[int, int] | None = None) -> None:
        rgb = image.convert("RGB")
        self.input_size = input_size or rgb.size
        width, height = rgb.size
        factor = min(1.0, WORK_SIZE / max(width, height))
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        small = rgb.resize(size, Image.Resampling.BOX) if size != rgb.size else rgb
        self.size = size
        self.gray = np.asarray(small.convert("L"))
        self.saturation = np.asarray(small.convert("HSV"))[..., 1]
        self.classes, self.separability = _two_classes((self.gray, self.saturation))
        self._labels = {True: label_components(self.classes)[0], False: label_components(~self.classes)[0]}

    def to_work(self, x: float, y: float) -> tuple[int, int]:
        (width, height), (w, h) = self.input_size, self.size
        return min(w - 1, max(0, int(x * w / width))), min(h - 1, max(0, int(y * h / height)))

    def region_at(self, x: float, y: float) -> np.ndarray:
        col, row = self.to_work(x, y)
        cls = bool(self.classes[row, col])
        labels = self._labels[cls]
        return labels == labels[row, col]

    def box_region(self, box: BoxSpec) -> np.ndarray:
        (width, height), (w, h) = self.input_size, self.size
        x0, y0 = self.to_work(box.x_min, box.y_min)
        x1 = min(w, max(x0 + 1, int(np.ceil(box.x_max * w / width))))
        y1 = min(h, max(y0 + 1, int(np.ceil(box.y_max * h / height))))
        out = np.zeros((h, w), dtype=bool)
        crop = (slice(y0, y1), slice(x0, x1))
        classes, separability = _two_classes((self.gray[crop], self.saturation[crop]))
        inside = np.ones(classes.shape, dtype=bool)
        if separability >= MIN_SEPARABILITY and min(classes.shape) >= 3:
            labels, n = label_components(_foreground(classes))
            if n:
                inside = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
        out[crop] = inside
        return out

    def text_regions(self) -> list[np.ndarray]:
        if self.separability < MIN_SEPARABILITY:
            return []
        labels, n = label_components(_foreground(self.classes))
        if not n:
            return []
        areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
        minimum = max(4, MIN_AREA_FRACTION * labels.size)
        order = sorted((i for i in range(n) if areas[i] >= minimum), key=lambda i: (-areas[i], i))
        return [labels == i + 1 for i in order]

    def upscale(self, mask: np.ndarray) -> np.ndarray:
        (width, height), (w, h) = self.input_size, self.size
        if (w, h) == (width, height):
            return mask.copy()
        rows = np.minimum(np.arange(height) * h // height, h - 1)
        cols = np.minimum(np.arange(width) * w // width, w - 1)
        return mask[rows][:, cols]


def _geometric_objects(work: _Work, points: Sequence[PointSpec], boxes: Sequence[BoxSpec]) -> list[np.ndarray]:
    groups: dict[object, np.ndarray] = {}

    def add(key: object, region: np.ndarray) -> None:
        groups[key] = groups[key] | region if key in groups else region

    for point in points:
        if point.label == 1:
            add(("id", point.object_id), work.region_at(point.x, point.y))
    for index, box in enumerate(boxes):
        add(("id", box.object_id) if box.object_id is not None else ("box", index), work.box_region(box))
    return list(groups.values())


def segment(
    image: Image.Image,
    *,
    prompt: str = "",
    points: Sequence[PointSpec] = (),
    boxes: Sequence[BoxSpec] = (),
    max_masks: int = 1,
    size: tuple[int, int] | None = None,
) -> list[Segment]:
    """The objects the prompts designate in ``image``, best first, at most ``max_masks``; may be empty.

    ``size`` = (width, height) is the photo's own size when ``image`` is a reduced copy of it: prompts are in its
    pixels, and masks come back at that size."""
    work = _Work(image, size)
    objects = _geometric_objects(work, points, boxes)
    if not objects and prompt.strip():
        objects = work.text_regions()
    negative = np.zeros(work.classes.shape, dtype=bool)
    for point in points:
        if point.label == 0:
            negative |= work.region_at(point.x, point.y)
    segments = []
    for region in objects:
        region = region & ~negative
        if region.any():
            segments.append(Segment(mask=work.upscale(region), score=_score(region, work.separability)))
        if len(segments) >= max_masks:
            break
    return segments
