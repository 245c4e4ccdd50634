"""tests/INDEX.md, the map from each package module to the test files that import it, is current and complete, and
the import finder behind it (tests/index.py) sees every import form."""

from __future__ import annotations

import importlib.util
import re
import textwrap
from pathlib import Path

TESTS = Path(__file__).resolve().parents[2]
PACKAGE_DIR = TESTS.parent / "airflow_provider_sam3"


def _load_index():
    spec = importlib.util.spec_from_file_location("tests_index", TESTS / "index.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


index = _load_index()


def test_committed_index_is_current():
    committed = index.INDEX.read_text(encoding="utf-8") if index.INDEX.exists() else ""
    assert committed == index.render(), "tests/INDEX.md is stale: run `python tests/index.py --write`"


def test_every_package_module_has_a_row():
    rows = set(re.findall(r"^\| `([\w.]+)` \|", index.INDEX.read_text(encoding="utf-8"), flags=re.MULTILINE))
    modules = set(index.package_modules(PACKAGE_DIR))
    assert modules, "no package modules found"
    assert modules - rows == set(), "modules missing from tests/INDEX.md: run `python tests/index.py --write`"


def _write(root: Path, files: dict[str, str]) -> None:
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")


PKG = "airflow_provider_sam3"
SYNTHETIC_PACKAGE = {
    f"{PKG}/__init__.py": "",
    f"{PKG}/plain.py": "",
    f"{PKG}/aliased.py": "",
    f"{PKG}/named.py": "VALUE = 1\n",
    f"{PKG}/late.py": "",
    f"{PKG}/by_string.py": "",
    f"{PKG}/plugin.py": "",
    f"{PKG}/hooks/__init__.py": "",
    f"{PKG}/hooks/fal.py": "",
    f"{PKG}/hooks/deep.py": "",
    f"{PKG}/hooks/inner.py": "from airflow_provider_sam3.hooks import deep\n",
    f"{PKG}/hooks/relative.py": "from . import inner\nfrom ..named import VALUE\n",
    f"{PKG}/untested.py": "",
}
SYNTHETIC_TESTS = {
    "unit/hooks/test_plain.py": "import airflow_provider_sam3.plain\n",
    "unit/hooks/test_aliased.py": "import os, airflow_provider_sam3.aliased as a\n",
    "integration/hook/test_submodule.py": "from airflow_provider_sam3.hooks import fal\n",
    "integration/hook/test_name.py": "from airflow_provider_sam3.hooks import __doc__\n",
    "deployment/test_names.py": "from airflow_provider_sam3.named import VALUE, other\n",
    "cluster/test_late.py": """\
        def test_late():
            from airflow_provider_sam3.late import thing

            class Inner:
                def method(self):
                    import airflow_provider_sam3.hooks.relative
        """,
    "integration/evidence/test_string.py": """\
        import importlib

        DAG = "import airflow_provider_sam3.untested"

        def test_it():
            importlib.import_module("airflow_provider_sam3.by_string")
        """,
    "conftest.py": 'pytest_plugins = ["airflow_provider_sam3.plugin"]\n',
    "helpers.py": "from airflow_provider_sam3 import exceptions_not_a_module\nimport json\n",
}


def test_import_finder_sees_every_form(tmp_path):
    _write(tmp_path, SYNTHETIC_PACKAGE)
    _write(tmp_path / "tests", SYNTHETIC_TESTS)

    found = index.tests_by_module(tmp_path / PKG, tmp_path / "tests", PKG)

    assert found == {
        PKG: {"helpers.py"},
        f"{PKG}.plain": {"unit/hooks/test_plain.py"},
        f"{PKG}.aliased": {"unit/hooks/test_aliased.py"},
        f"{PKG}.named": {"deployment/test_names.py"},
        f"{PKG}.late": {"cluster/test_late.py"},
        f"{PKG}.by_string": {"integration/evidence/test_string.py"},
        f"{PKG}.plugin": {"conftest.py"},
        f"{PKG}.hooks": {"integration/hook/test_name.py"},
        f"{PKG}.hooks.fal": {"integration/hook/test_submodule.py"},
        f"{PKG}.hooks.relative": {"cluster/test_late.py"},
        f"{PKG}.hooks.deep": set(),
        f"{PKG}.hooks.inner": set(),
        f"{PKG}.untested": set(),
    }


def test_index_places_suites_and_names_where_untested_modules_run(tmp_path):
    _write(tmp_path, SYNTHETIC_PACKAGE)
    _write(tmp_path / "tests", SYNTHETIC_TESTS)

    rows = {
        line.split(" | ")[0].strip("|` "): line
        for line in index.render(tmp_path / PKG, tmp_path / "tests", PKG).splitlines()
        if line.startswith(f"| `{PKG}")
    }

    assert set(rows) == set(index.package_modules(tmp_path / PKG, PKG))
    assert rows[f"{PKG}.plain"] == f"| `{PKG}.plain` | `unit/hooks/test_plain.py` |  |  |  |"
    assert rows[f"{PKG}.hooks.fal"] == f"| `{PKG}.hooks.fal` |  | `integration/hook/test_submodule.py` |  |  |"
    assert rows[f"{PKG}.late"] == f"| `{PKG}.late` |  |  | `cluster/test_late.py` |  |"
    assert rows[f"{PKG}.plugin"] == f"| `{PKG}.plugin` |  |  |  | `conftest.py` |"
    # inner is imported (relatively) by hooks.relative, which a test imports; deep only by inner: one more step.
    assert f"only through `{PKG}.hooks.relative` |" in rows[f"{PKG}.hooks.inner"]
    assert f"only through `{PKG}.hooks.relative` (2 imports away)" in rows[f"{PKG}.hooks.deep"]
    assert "not imported by any test or tested module" in rows[f"{PKG}.untested"]
