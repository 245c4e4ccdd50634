"""One guarded place for each kind of byte that comes from outside the provider.

- ``files``: local and object-store files (regular files only, size capped before reading, confined to a folder).
- ``images``: image and mask decoding (a pixel cap, a mask's size checked against its image's).
- ``text``: text from fal (the key scrubbed in every form, length capped).
- ``numbers``: numbers from fal (NaN and infinities refused, boxes clamped to the image).
- ``structure``: templated collections (depth and length limits, reported naming the field).

URLs and request ids are checked in ``hooks.trust``; outputs fetched from fal in ``hooks.downloads``; HTTP calls
get their total deadline in ``hooks.deadlines``. Every path (single-image operators, the batch, the sensor, the
result readers, the examples) goes through these; a path that reads outside bytes any other way is a bug.
Pure Python: no Airflow, no network; Pillow and numpy only inside ``images``.
"""

__all__ = []
