"""The demo's real photographs: public-domain and CC0 photos that scikit-image ships inside its wheel.

Nothing is downloaded: the files are read from the installed ``skimage`` package (the ``demo`` extra installs it),
each with a prompt naming its object, a box around it (pixels of the photo) and its credit as scikit-image's
docstrings give it. The generated shapes in the tests stay; these are for people to look at.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEMO_PHOTOS", "DemoPhoto"]


@dataclass(frozen=True)
class DemoPhoto:
    name: str
    file: str
    """File name in scikit-image's ``skimage/data`` folder."""
    prompt: str
    box: tuple[int, int, int, int]
    """(x_min, y_min, x_max, y_max) around the object, in the photo's pixels."""
    credit: str

    def path(self) -> str:
        """The photo's path inside the installed scikit-image; a clear error when it is not installed."""
        from importlib.resources import files
        from importlib.util import find_spec

        if find_spec("skimage") is None:
            raise ModuleNotFoundError(
                "The demo's photos come from scikit-image, which is not installed: "
                "pip install 'airflow-provider-sam3[demo]' (or run `make demo`)."
            )
        return str(files("skimage") / "data" / self.file)


DEMO_PHOTOS = (
    DemoPhoto(
        "coffee",
        "coffee.png",
        "coffee cup",
        (170, 10, 415, 295),
        "Rachel Michetti, courtesy of Pikolo Espresso Bar; CC0",
    ),
    DemoPhoto("chelsea", "chelsea.png", "cat", (0, 0, 395, 300), "Stefan van der Walt; CC0"),
    DemoPhoto(
        "rocket",
        "rocket.jpg",
        "rocket",
        (304, 122, 342, 400),
        "SpaceX, launch of DSCOVR on Falcon 9; public domain",
    ),
    DemoPhoto(
        "astronaut",
        "astronaut.png",
        "astronaut",
        (18, 10, 368, 512),
        "NASA, Eileen Collins; no known copyright restrictions (public domain)",
    ),
    DemoPhoto("camera", "camera.png", "man", (0, 60, 335, 512), "Lav Varshney; CC0"),
)
"""The photos, in the demo's order."""
