"""Pixel tools of the emulator's stand-in segmenter: connected components, Otsu's threshold, k-means colours and
their distances (CIE Lab), smoothing and hole filling. numpy and Pillow only; no prompt logic (``segmenter``)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

__all__ = [
    "KMEANS_SAMPLE",
    "border_pixels",
    "colour_centres",
    "fill_holes",
    "label_components",
    "largest_component",
    "nearest_distance",
    "otsu",
    "smoothed",
]

COLOURS = 6
"""k-means colours per model."""
KMEANS_SAMPLE = 2048
"""k-means learns from at most this many pixels (an even sample)."""


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


def colour_centres(pixels: np.ndarray, k: int = COLOURS) -> np.ndarray:
    """``k`` (or fewer) k-means colours of ``pixels`` (n x 3), seeded deterministically by lightness quantiles."""
    if len(pixels) > KMEANS_SAMPLE:
        pixels = pixels[:: len(pixels) // KMEANS_SAMPLE]
    order = np.argsort(pixels[:, 0], kind="stable")
    centres = pixels[order[np.linspace(0, len(pixels) - 1, min(k, len(pixels))).astype(int)]].copy()
    for _ in range(5):
        nearest = _nearest_centre(pixels, centres)
        for index in range(len(centres)):
            members = pixels[nearest == index]
            if len(members):
                centres[index] = members.mean(axis=0)
    return centres


def _squared_distances(pixels: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Squared Lab distances of ``pixels`` (n x 3) to one colour."""
    difference = pixels - centre
    return np.einsum("ij,ij->i", difference, difference)


def _nearest_centre(pixels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    best = _squared_distances(pixels, centres[0])
    index = np.zeros(len(pixels), dtype=np.intp)
    for number, centre in enumerate(centres[1:], start=1):
        distance = _squared_distances(pixels, centre)
        closer = distance < best
        best = np.where(closer, distance, best)
        index[closer] = number
    return index


def nearest_distance(pixels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Lab distance of each of ``pixels`` to the nearest of ``centres``."""
    best = _squared_distances(pixels, centres[0])
    for centre in centres[1:]:
        np.minimum(best, _squared_distances(pixels, centre), out=best)
    return np.sqrt(best)


def smoothed(values: np.ndarray) -> np.ndarray:
    """``values`` in [0, 1] averaged over a 5 x 5 neighbourhood (Pillow's box blur)."""
    picture = Image.fromarray(np.clip(values * 255.0, 0, 255).astype(np.uint8), "L")
    return np.asarray(picture.filter(ImageFilter.BoxBlur(2)), dtype=np.float32) / 255.0


def fill_holes(mask: np.ndarray, largest_hole: float = 1.0) -> np.ndarray:
    """``mask`` with its holes (regions outside it not touching the picture's edge) filled, those of at most
    ``largest_hole`` times its area."""
    labels, count = label_components(~mask)
    if not count:
        return mask
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    holes = areas <= largest_hole * mask.sum()
    holes[0] = False
    holes[np.concatenate((labels[0], labels[-1], labels[:, 0], labels[:, -1]))] = False
    return mask | holes[labels]


def border_pixels(array: np.ndarray, width: int) -> np.ndarray:
    """The pixels of ``array`` (h x w x 3) within ``width`` of its edge, as n x 3."""
    inner = np.ones(array.shape[:2], dtype=bool)
    inner[width : -width or None, width : -width or None] = False
    return array[inner]


def largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = label_components(mask)
    if not count:
        return mask
    return labels == int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
