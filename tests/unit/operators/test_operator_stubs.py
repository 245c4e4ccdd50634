"""The typed operators' stub (``operators/sam3.pyi``): generated from the registry's models, committed current,
and read by mypy, so a misspelt keyword or a wrong type in a DAG file is a type error."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from airflow_provider_sam3.operators import sam3
from airflow_provider_sam3.operators.stubs import STUB_PATH, main, render_stub

REPO = Path(__file__).resolve().parents[3]
CALLS = Path(__file__).with_name("typed_calls.py")
MARK = re.compile(r"\)  # error: (.+)$")


def test_the_committed_stub_is_what_the_registry_generates():
    assert STUB_PATH.read_text(encoding="utf-8") == render_stub(), (
        "operators/sam3.pyi is stale: run `python -m airflow_provider_sam3.operators.stubs` and commit it"
    )
    assert main(["--check"]) == 0


@pytest.mark.parametrize("name", [name for name in sam3.__all__ if getattr(sam3, name).kind])
def test_every_request_field_is_a_keyword_of_the_stub(name):
    operator = getattr(sam3, name)
    stub = render_stub().split(f"class {name}(")[1].split("\nclass ")[0]
    declared = re.findall(r"^        (\w+): ", stub, flags=re.MULTILINE)
    assert declared[: len(operator.input_fields)] == list(operator.input_fields)
    runtime = [p.name for p in inspect.signature(operator.__init__).parameters.values() if p.kind == p.KEYWORD_ONLY]
    assert runtime == list(operator.input_fields)  # what partial()/expand() accept at run time


def test_mypy_reads_the_signatures():
    """Each line of ``typed_calls.py`` marked ``# error: ...`` is a mypy error saying that, and no other line is."""
    from mypy import api

    expected = {
        number: MARK.search(line).group(1).strip()  # type: ignore[union-attr]
        for number, line in enumerate(CALLS.read_text(encoding="utf-8").splitlines(), start=1)
        if MARK.search(line)
    }
    flags = ["--config-file", "", "--python-version", "3.10", "--ignore-missing-imports", "--follow-imports", "silent"]
    cache = ["--cache-dir", str(REPO / ".mypy_cache" / "stub-check"), "--no-error-summary"]
    stdout, stderr, _ = api.run([str(CALLS.relative_to(REPO)), *flags, *cache])
    errors: dict[int, str] = {}
    for line in stdout.splitlines():
        found = re.match(r".*typed_calls\.py:(\d+): error: (.*)$", line)
        if found:
            errors[int(found.group(1))] = errors.get(int(found.group(1)), "") + found.group(2)
    assert sorted(errors) == sorted(expected), stdout + stderr
    for number, fragment in expected.items():
        assert fragment in errors[number], f"line {number}: {errors[number]!r} does not say {fragment!r}"
