"""The package's shape, checked on its source: layers import only downward, every module says what it exports,
nothing imports another module's private names, and names are imported from where they are defined.

The layers (lowest first; a module may import its own layer and those below):
``exceptions`` and the package root, ``guards``, ``media``, ``models`` with the ``endpoints`` registry, ``hooks``,
``storage``, ``batch``, ``triggers``, ``links``, ``operators``, ``sensors``, ``ui`` (the Airflow UI plugin). Beside
them: ``samples`` (photos, only ``exceptions``) and ``testing`` (the emulator: ``models``, ``media`` and below,
never the hook).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PACKAGE = "airflow_provider_sam3"
LAYERS = {
    "": 0,
    "exceptions": 0,
    "guards": 1,
    "media": 2,
    "models": 3,
    "endpoints": 3,
    "hooks": 4,
    "storage": 5,
    "batch": 6,
    "triggers": 7,
    "links": 8,
    "operators": 9,
    "sensors": 10,
    "ui": 11,
}
BESIDE = {"samples": 0, "testing": 3}
"""Groups outside the stack, with the highest layer they may import."""


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    defined: set[str] = field(default_factory=set)
    imported: set[str] = field(default_factory=set)
    exported: list[str] | None = None


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _top_level_names(body: list[ast.stmt], module: Module) -> None:
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            module.defined.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        module.defined.add(name.id)
                if isinstance(target, ast.Name) and target.id == "__all__":
                    module.exported = _exported(node.value, body)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            module.defined.add(node.target.id)
            if node.target.id == "__all__" and node.value is not None:
                module.exported = _exported(node.value, body)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            module.imported.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.If, ast.Try)):
            _top_level_names(node.body, module)
            _top_level_names(node.orelse, module)
            for handler in getattr(node, "handlers", []):
                _top_level_names(handler.body, module)


def _exported(value: ast.expr, body: list[ast.stmt]) -> list[str]:
    """``__all__``'s names: a literal list, or ``sorted(TABLE)`` of a lazy facade's dict literal ``TABLE``."""
    if isinstance(value, ast.Call) and isinstance(value.args[0], ast.Name):
        wanted = value.args[0].id
        for node in body:
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, ast.AnnAssign)
                else []
            )
            if any(isinstance(t, ast.Name) and t.id == wanted for t in targets) and isinstance(node.value, ast.Dict):
                return [ast.literal_eval(key) for key in node.value.keys if key is not None]
        raise AssertionError(f"__all__ = sorted({wanted}) needs {wanted} to be a dict literal")
    return list(ast.literal_eval(value))


def _package_modules() -> dict[str, Module]:
    modules = {}
    for path in sorted((REPO / PACKAGE).rglob("*.py")):
        name = _module_name(path, REPO)
        module = Module(name, path, ast.parse(path.read_text(), filename=str(path)))
        _top_level_names(module.tree.body, module)
        modules[name] = module
    return modules


MODULES = _package_modules()


def _group(module_name: str) -> str:
    parts = module_name.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(tree: ast.Module, importer: str | None = None):
    """(line, module imported from, names) for every import of the package in ``tree``, at any depth."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith(PACKAGE):
            yield node.lineno, node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE):
                    yield node.lineno, alias.name, []


def _sources_that_import_the_package() -> list[Path]:
    paths = sorted((REPO / PACKAGE).rglob("*.py"))
    for folder in ("dags_examples", "tests", "bench"):
        paths += sorted((REPO / folder).rglob("*.py"))
    return paths


def layer_violations() -> list[str]:
    problems = []
    for module in MODULES.values():
        group = _group(module.name)
        ceiling = BESIDE.get(group, LAYERS.get(group))
        assert ceiling is not None, f"{module.name}: a new top-level part of the package needs its layer here"
        for line, target, _ in _imports(module.tree):
            target_group = _group(target)
            if target_group == group:
                continue
            if target_group in BESIDE or LAYERS[target_group] > ceiling:
                problems.append(f"{module.path.relative_to(REPO)}:{line} ({group}) imports {target}")
    return problems


def privacy_violations() -> list[str]:
    problems = []
    for path in _sources_that_import_the_package():
        tree = ast.parse(path.read_text(), filename=str(path))
        own = _module_name(path, REPO) if path.is_relative_to(REPO / PACKAGE) else None
        for line, target, names in _imports(tree):
            if target == own:
                continue
            for name in names:
                if name.startswith("_") and not name.startswith("__"):
                    problems.append(f"{path.relative_to(REPO)}:{line} imports {target}.{name}, a private name")
    return problems


def provenance_violations() -> list[str]:
    """Names imported from a module that neither defines them nor declares them in its ``__all__`` (an accidental
    re-export: import them from where they are defined)."""
    problems = []
    for path in _sources_that_import_the_package():
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, target, names in _imports(tree):
            source = MODULES.get(target)
            if source is None:
                continue
            for name in names:
                if name in source.defined or f"{target}.{name}" in MODULES:
                    continue
                if name in (source.exported or []):  # a facade that declares it (models.results, media)
                    continue
                problems.append(
                    f"{path.relative_to(REPO)}:{line} imports {name} from {target}, which does not define it"
                )
    return problems


def export_violations() -> list[str]:
    problems = []
    for module in MODULES.values():
        if module.path.name == "__main__.py":
            continue
        where = module.path.relative_to(REPO)
        if module.exported is None:
            problems.append(f"{where}: no __all__")
            continue
        for name in module.exported:
            if name not in module.defined | module.imported and "__getattr__" not in module.defined:
                problems.append(f"{where}: __all__ names {name}, which it does not define")
        for name in module.defined - set(module.exported):
            if not name.startswith("_") and _is_api(module, name):
                problems.append(f"{where}: {name} is public (no leading underscore) but not in __all__")
    return problems


def _is_api(module: Module, name: str) -> bool:
    """Functions and classes are its API; a constant is too unless it is a type alias or TYPE_CHECKING name."""
    for node in module.tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
    return False


def drawing_violations() -> list[str]:
    """Modules the architecture drawing (docs/architecture.md) does not name, outside the emulator."""
    drawing = (REPO / "docs" / "architecture.md").read_text()
    missing = []
    for name in MODULES:
        short = name.removeprefix(f"{PACKAGE}.")
        if (
            name == PACKAGE
            or short.startswith("testing")
            or short.endswith("__init__")
            or "." not in short
            and short
            in (
                "batch",
                "guards",
                "hooks",
                "media",
                "models",
                "operators",
                "samples",
                "sensors",
                "storage",
                "triggers",
                "ui",
            )
        ):
            continue
        if short not in drawing.split():
            missing.append(f"docs/architecture.md does not name {short}")
    return missing


@pytest.mark.parametrize(
    "check",
    [layer_violations, privacy_violations, provenance_violations, export_violations, drawing_violations],
    ids=lambda c: c.__name__,
)
def test_the_package_keeps_its_shape(check):
    assert check() == []
