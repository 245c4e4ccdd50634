"""Classical, deterministic segmentation standing in for SAM 3 (numpy and Pillow only).

It works on a lightly blurred copy whose longest side is at most ``WORK_SIZE`` pixels, in CIE Lab colour, and
returns masks at the input size (nearest-neighbour upscaling). Boxes and points use a two-colour-model split in the
spirit of GrabCut: a few k-means colours for the object and for its surroundings, each pixel given to the nearer
model (smoothed over its neighbours), the object's colours learnt again from what it won, three rounds.

- Boxes (each its own object unless it shares an ``object_id``): the surroundings are a ring just outside the box
  and the box's own edge (where the picture goes on beyond it), the object starts as the box's centre, and pixels
  near the box's edge lean to the surroundings; the largest connected part inside the box, holes filled; the whole
  box when its content does not differ from its surroundings.
- Points with label 1 grow the connected region whose colours are nearer the point's own than the rest of the
  picture's; points sharing an ``object_id`` (or having none) make one object. Label 0 points cut their region out of
  every object.
- Text prompt (its words are not understood): the most salient regions: an Otsu split of lightness, saturation, a*
  or b*, whichever separates best while leaving most of the picture's border to the background; its connected
  regions, largest first, each at least ``MIN_AREA_FRACTION`` of the picture, holes filled.
When points or boxes give objects, the text prompt is not used. Same input, same masks. How plausible the masks are
on real photos: ``docs/mask-quality.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageCms, ImageFilter

from airflow_provider_sam3.testing.emulator.pixels import (
    border_pixels,
    colour_centres,
    fill_holes,
    label_components,
    largest_component,
    nearest_distance,
    otsu,
    smoothed,
)

__all__ = ["WORK_SIZE", "BoxSpec", "PointSpec", "Segment", "segment"]

WORK_SIZE = 256
MIN_AREA_FRACTION = 0.001
MIN_CONTRAST = 8.0
"""Lab distance (about 2 just-noticeable differences) under which colours count as one: a box whose content is that
close to its surroundings is its whole self; a point's region holds the colours that close to its own."""
ROUNDS = 3
BLUR = 0.4
"""Gaussian blur radius (work pixels) against JPEG noise; more rounds off edges."""
TEXT_MIN_MERIT = 0.25
"""Below this (Otsu separability, less the share of the picture's border the object would hold) nothing stands out."""
POINT_HOLE_FRACTION = 0.05
"""A point's region keeps holes larger than this fraction of its area (a point on a table does not take the cup)."""
BORDER_FRACTION = 0.04
EDGE_FRACTION = 0.03
"""Width of a box's own edge taken as background (where the box does not end at the picture's edge)."""
INWARD_WEIGHT = 0.1
"""How much a pixel's distance from its box's edge counts, against its colour, in the object's favour."""
"""Width of the picture's border strip, as a fraction of its shorter side."""


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


def _split(
    lab: np.ndarray, object_seed: np.ndarray, surroundings: np.ndarray, inward: np.ndarray | None = None
) -> np.ndarray:
    """Pixels of ``lab`` nearer the object's colours than the surroundings', the object's colours learnt again from
    what it won each round (the surroundings' stay those of ``surroundings``, n x 3). ``inward`` (0 at a box's edge,
    1 well inside) leans edge pixels towards the surroundings."""
    pixels = lab.reshape(-1, 3)
    around = colour_centres(surroundings)
    far = nearest_distance(pixels, around)
    chosen = object_seed.ravel()
    for _ in range(ROUNDS):
        if not chosen.any():
            break
        near = nearest_distance(pixels, colour_centres(pixels[chosen]))
        share = smoothed((far / np.maximum(far + near, 1e-6)).reshape(lab.shape[:2]))
        if inward is not None:
            share = (1.0 - INWARD_WEIGHT) * share + INWARD_WEIGHT * inward
        chosen = share.ravel() > 0.5
    return chosen.reshape(lab.shape[:2])


def _score(mask: np.ndarray, contrast: float) -> float:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    fill = mask.sum() / ((rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1))
    return round(0.5 + 0.45 * min(contrast / 50.0, 1.0) * (0.5 + 0.5 * float(fill)), 4)


@functools.cache
def _to_lab() -> ImageCms.ImageCmsTransform:
    """sRGB to CIE Lab, built once (``Image.convert("LAB")`` builds it again for every picture)."""
    return ImageCms.buildTransformFromOpenProfiles(
        ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB"
    )


class _Work:
    """The downscaled, lightly blurred picture in Lab, and its border's colours."""

    def __init__(self, image: Image.Image, input_size: tuple[int, int] | None = None) -> None:
        rgb = image.convert("RGB")
        self.input_size = input_size or rgb.size
        width, height = rgb.size
        factor = min(1.0, WORK_SIZE / max(width, height))
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        small = rgb.resize(size, Image.Resampling.BOX) if size != rgb.size else rgb
        self.size = size
        small = small.filter(ImageFilter.GaussianBlur(BLUR))
        raw = np.asarray(ImageCms.applyTransform(small, _to_lab()))
        self.lab = raw.astype(np.float32)
        self.lab[..., 1:] = raw[..., 1:].astype(np.int8)  # Pillow stores a* and b* as signed bytes
        self.shape = self.lab.shape[:2]
        self.channels = [
            np.asarray(small.convert("L")),
            np.asarray(small.convert("HSV"))[..., 1],
            np.clip(self.lab[..., 1] * 2 + 128, 0, 255).astype(np.uint8),
            np.clip(self.lab[..., 2] * 2 + 128, 0, 255).astype(np.uint8),
        ]
        strip = max(1, round(BORDER_FRACTION * min(self.shape)))
        self.border = border_pixels(self.lab, strip)
        self.border_colours = colour_centres(self.border)

    def to_work(self, x: float, y: float) -> tuple[int, int]:
        (width, height), (w, h) = self.input_size, self.size
        return min(w - 1, max(0, int(x * w / width))), min(h - 1, max(0, int(y * h / height)))

    def contrast(self, mask: np.ndarray) -> float:
        """How far the colours under ``mask`` are from the border's (a Lab distance; 0 when ``mask`` is empty)."""
        if not mask.any():
            return 0.0
        return float(np.median(nearest_distance(self.lab[mask], self.border_colours)))

    def region_at(self, x: float, y: float) -> np.ndarray:
        col, row = self.to_work(x, y)
        radius = max(1, round(0.02 * max(self.shape)))
        seed = np.zeros(self.shape, dtype=bool)
        seed[max(0, row - radius) : row + radius + 1, max(0, col - radius) : col + radius + 1] = True
        different = ~_near_colours(self.lab, self.lab[seed])
        if not different.any():
            return np.ones(self.shape, dtype=bool)
        labels, _ = label_components(_split(self.lab, seed, self.lab[different]) | seed)
        return fill_holes(labels == labels[row, col], largest_hole=POINT_HOLE_FRACTION)

    def box_region(self, box: BoxSpec) -> np.ndarray:
        (width, height), (w, h) = self.input_size, self.size
        x0, y0 = self.to_work(box.x_min, box.y_min)
        x1 = min(w, max(x0 + 1, int(np.ceil(box.x_max * w / width))))
        y1 = min(h, max(y0 + 1, int(np.ceil(box.y_max * h / height))))
        out = np.zeros(self.shape, dtype=bool)
        crop = (slice(y0, y1), slice(x0, x1))
        out[crop] = True
        margin = max(2, round(0.08 * max(x1 - x0, y1 - y0)))
        ring = np.zeros(self.shape, dtype=bool)
        ring[max(0, y0 - margin) : y1 + margin, max(0, x0 - margin) : x1 + margin] = True
        ring &= ~out
        inside = self.lab[crop]
        bh, bw = inside.shape[:2]
        edge = max(1, round(EDGE_FRACTION * min(bh, bw)))
        own_edge = np.zeros((bh, bw), dtype=bool)  # the box's own edge is background too, where the picture goes on
        own_edge[:edge] |= y0 > 0
        own_edge[bh - edge :] |= y1 < h
        own_edge[:, :edge] |= x0 > 0
        own_edge[:, bw - edge :] |= x1 < w
        surroundings = np.concatenate((self.lab[ring], inside[own_edge]))
        if len(surroundings) < 16:
            surroundings = border_pixels(inside, edge)
        if (
            min(bh, bw) < 3
            or float(np.median(nearest_distance(inside.reshape(-1, 3), colour_centres(surroundings)))) < MIN_CONTRAST
        ):
            return out
        centre = np.zeros((bh, bw), dtype=bool)
        centre[bh // 4 : bh - bh // 4 or None, bw // 4 : bw - bw // 4 or None] = True
        rows = np.minimum(np.arange(bh), np.arange(bh)[::-1])[:, None]
        cols = np.minimum(np.arange(bw), np.arange(bw)[::-1])[None, :]
        inward = np.clip(np.minimum(rows, cols) / max(1.0, 0.25 * min(bh, bw)), 0.0, 1.0)
        found = fill_holes(largest_component(_split(inside, centre, surroundings, inward)))
        if found.any():
            out[crop] = found
        return out

    def text_regions(self) -> list[np.ndarray]:
        best: tuple[float, np.ndarray] | None = None
        for channel in self.channels:
            threshold, separability = otsu(channel)
            classes = channel > threshold
            on_border = border_pixels(classes[..., None], 1).mean()
            foreground = ~classes if on_border > 0.5 else classes
            share = min(on_border, 1.0 - on_border)
            merit = separability * (1.0 - share)
            if best is None or merit > best[0]:
                best = (merit, foreground)
        assert best is not None
        if best[0] < TEXT_MIN_MERIT:
            return []
        labels, n = label_components(best[1])
        if not n:
            return []
        areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
        minimum = max(4, MIN_AREA_FRACTION * labels.size)
        order = sorted((i for i in range(n) if areas[i] >= minimum), key=lambda i: (-areas[i], i))
        return [fill_holes(labels == i + 1) for i in order]

    def upscale(self, mask: np.ndarray) -> np.ndarray:
        (width, height), (w, h) = self.input_size, self.size
        if (w, h) == (width, height):
            return mask.copy()
        rows = np.minimum(np.arange(height) * h // height, h - 1)
        cols = np.minimum(np.arange(width) * w // width, w - 1)
        return mask[rows][:, cols]


def _near_colours(lab: np.ndarray, own: np.ndarray) -> np.ndarray:
    """Pixels of ``lab`` within ``MIN_CONTRAST`` of the colours of ``own`` (n x 3)."""
    return (nearest_distance(lab.reshape(-1, 3), colour_centres(own)) < MIN_CONTRAST).reshape(lab.shape[:2])


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
    negative = np.zeros(work.shape, dtype=bool)
    for point in points:
        if point.label == 0:
            negative |= work.region_at(point.x, point.y)
    segments = []
    for region in objects:
        region = region & ~negative
        if region.any():
            segments.append(Segment(mask=work.upscale(region), score=_score(region, work.contrast(region))))
        if len(segments) >= max_masks:
            break
    return segments
