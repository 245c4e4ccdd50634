"""The contract between the hooks and fal-client's private parts (``hooks/fal_client_internals.py``).

Each name in ``CONTRACT`` is checked against the installed fal-client: it exists, a function takes the same
parameters, a constant has the same kind of value, a client attribute is still the cached property the hooks await
or read. A fal-client release that changes one fails here, naming the part, what changed and the tested range,
before any task meets it. A second check keeps every private use inside that one module.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import re
from importlib.metadata import version
from pathlib import Path
from typing import Any, get_args

import pytest
from packaging.specifiers import SpecifierSet

from airflow_provider_sam3.hooks import fal_client_internals as internals

REPO = Path(__file__).resolve().parents[3]
INSTALLED = version("fal-client")


def _broken(name: str, what: str) -> str:
    return (
        f"fal-client {INSTALLED} changed {name}: {what}. airflow_provider_sam3/hooks/fal_client_internals.py was "
        f"written and tested for fal-client{internals.TESTED_RANGE}; adapt it (and TESTED_RANGE and the pin in "
        "pyproject.toml) before allowing this release"
    )


def _resolve(name: str) -> Any:
    module_name, _, path = name.partition(":")
    value: Any = importlib.import_module(module_name)
    for part in path.split("."):
        owner = value
        value = inspect.getattr_static(owner, part, None) if inspect.isclass(owner) else getattr(owner, part, None)
        if value is None and inspect.isclass(owner) and dataclasses.is_dataclass(owner):
            value = {f.name: f for f in dataclasses.fields(owner)}.get(part)
        if value is None:
            pytest.fail(_broken(name, f"{part!r} no longer exists"))
    return value


def _parameters(value: Any) -> tuple[str, ...]:
    signature = inspect.signature(value)
    return tuple(p.name for p in signature.parameters.values())


@pytest.mark.parametrize("name", sorted(internals.CONTRACT))
def test_fal_client_still_offers(name):
    expected = internals.CONTRACT[name]
    value = _resolve(name)
    if isinstance(expected, tuple):
        assert callable(value), _broken(name, f"it is no longer callable ({type(value).__name__})")
        found = _parameters(value)
        assert found == expected, _broken(name, f"its parameters are {found}, the hooks call it with {expected}")
        return
    kinds = {
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "dict": lambda v: isinstance(v, dict),
        "literal normal low": lambda v: get_args(v) == ("normal", "low"),
        "cached property (httpx.Client)": lambda v: isinstance(v, functools.cached_property),
        "async cached property (httpx.AsyncClient)": lambda v: type(v).__name__ == "CachedProperty",
    }
    if expected in kinds:
        assert kinds[expected](value), _broken(name, f"it is now {value!r}, not a {expected}")
        return
    # an exception class: the attributes the hooks read are its constructor's parameters
    found = set(_parameters(value.__init__))
    missing = set(expected.split()) - found
    assert not missing, _broken(name, f"it no longer takes {sorted(missing)}")


def test_the_installed_fal_client_is_in_the_tested_range_and_pinned_so():
    assert INSTALLED in SpecifierSet(internals.TESTED_RANGE), _broken(
        "its version", f"{INSTALLED} is outside the tested range"
    )
    (pin,) = re.findall(r'"fal-client([^"]*)"', (REPO / "pyproject.toml").read_text())
    assert SpecifierSet(pin) == SpecifierSet(internals.TESTED_RANGE), pin


def test_submit_headers_match_what_fal_clients_helpers_and_upload_lifecycle_write():
    import fal_client.client as fal_module

    assert internals.submit_headers("gpu", "low", 30) == {
        "X-Fal-Runner-Hint": "gpu",
        "X-Fal-Queue-Priority": "low",
        "X-Fal-Request-Timeout": "30.0",
    }
    written: dict[str, str] = {}
    fal_module._object_lifecycle_headers(written, {"expiration_duration_seconds": 3600})
    assert written[internals.LIFECYCLE_HEADER] == internals.lifecycle_header_value(3600)


def test_the_named_media_lifetimes_are_fal_clients():
    from airflow_provider_sam3.operators.preflight import MEDIA_LIFETIMES

    theirs = {name: seconds for name, seconds in internals.lifecycle_names().items() if seconds is not None}
    assert MEDIA_LIFETIMES == theirs


PRIVATE_USE = re.compile(
    r"from fal_client(\.\w+)* import [^\n]*\b_\w+|fal_client(\.\w+)*\._\w+|fal_module|\._client\b|_parse_status"
)


def test_no_module_but_the_internals_touches_fal_clients_private_parts():
    package = REPO / "airflow_provider_sam3"
    offenders = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "fal_client_internals.py" or "testing" in path.parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if PRIVATE_USE.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "use hooks/fal_client_internals.py instead:\n" + "\n".join(offenders)


def test_a_release_that_changes_a_private_part_fails_naming_it_and_the_range(monkeypatch):
    import fal_client.client as fal_module

    def changed(client, method, url, *, retries, **kwargs): ...

    monkeypatch.setattr(fal_module, "_maybe_retry_request", changed)
    with pytest.raises(AssertionError) as caught:
        test_fal_client_still_offers("fal_client.client:_maybe_retry_request")
    text = str(caught.value)
    assert "changed fal_client.client:_maybe_retry_request" in text and "'retries'" in text
    assert internals.TESTED_RANGE in text
    monkeypatch.delattr(fal_module, "MAX_ATTEMPTS")
    with pytest.raises(BaseException, match="'MAX_ATTEMPTS' no longer exists"):
        test_fal_client_still_offers("fal_client.client:MAX_ATTEMPTS")
