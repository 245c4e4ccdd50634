"""Shared helpers of the benchmark scripts: machine description and updating one section of docs/benchmarks.md.

Each benchmark owns the text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` in the document; everything
else (other benchmarks' sections, the introduction) is left byte for byte as it was.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DOC = REPO / "docs" / "benchmarks.md"

_HEADER = """# Benchmarks

Measured numbers behind the provider's performance claims. Each section is written by the script named in it
(see `bench/README.md`), between its own `<!-- name:start -->` / `<!-- name:end -->` markers; rerun the script to
refresh its section. Numbers are from the machine stated in each section; compare ratios, not absolute times,
across machines.
"""


def machine() -> str:
    """One line: CPU model, cores, OS and Python."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return (
        f"{model}, {usable} usable cores (os.cpu_count() = {os.cpu_count()}), {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def today() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def command_line() -> str:
    """The command that produced the section, relative to the repository root when possible."""
    python = Path(sys.executable)
    try:
        python_shown = str(python.relative_to(REPO))
    except ValueError:
        python_shown = str(python)
    script = Path(sys.argv[0]).resolve()
    try:
        script_shown = str(script.relative_to(REPO))
    except ValueError:
        script_shown = str(script)
    return " ".join([python_shown, script_shown, *map(shlex.quote, sys.argv[1:])])


def update_section(doc: Path, name: str, body: str) -> None:
    """Replace (or append) the ``name`` section of ``doc``, creating the document if needed."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = doc.read_text() if doc.exists() else _HEADER
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
