"""Small generated product photos for batch tests and benchmarks."""

from __future__ import annotations

import io
import random


def write_photos(folder, count: int, *, seed: int = 7) -> list:
    """``count`` small PNG photos, each a dark background with one or two bright rectangles the emulator finds."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        width, height = rng.choice([(64, 48), (80, 60), (96, 64)])
        image = Image.new("RGB", (width, height), (15, 20, 30))
        draw = ImageDraw.Draw(image)
        for _ in range(rng.choice([1, 2])):
            x0, y0 = rng.randrange(2, width // 2), rng.randrange(2, height // 2)
            draw.rectangle(
                [x0, y0, x0 + rng.randrange(8, width // 2), y0 + rng.randrange(8, height // 2)],
                fill=(rng.randrange(180, 255), rng.randrange(150, 255), 60),
            )
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        path = folder / f"photo_{number:04d}.png"
        path.write_bytes(buffer.getvalue())
        paths.append(path)
    return paths
