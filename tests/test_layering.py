"""The arrows between the packages point one way (DESIGN.md, Layout), read from the source with ast:

- no import cycle among the modules of a package (inference_service, http_bridge, ortserve_common);
- inference_service never imports http_bridge; http_bridge imports of inference_service only inference_service.api
  (the stubs); ortserve_common imports neither, and nothing beyond what the bridge image holds.

Every import counts: at module level, under `if TYPE_CHECKING:` and inside functions (deferred so that `--help`
starts fast, but an arrow all the same). `from X import Y` is an arrow to X.Y where that is a module, else to X;
the parent packages an import also runs (their __init__) are not arrows.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("inference_service", "http_bridge", "ortserve_common")
# the bridge image's packages that ortserve_common may use (docker/requirements.py holds the whole list)
COMMON_THIRD_PARTY = frozenset({"pydantic", "pydantic_settings", "pythonjsonlogger"})


@dataclass(slots=True, frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the module imported: a known module of ours where `from X import Y` names one, else X


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> Iterator[Import]:
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (Import(name, alias.name) for alias in node.names)
        if not isinstance(node, ast.ImportFrom):
            continue
        base = node.module or ""
        if node.level:  # relative: from the package of `name`
            package = name.split(".") if is_package else name.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join(package + ([base] if base else []))
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            yield Import(name, sub if sub in known else base)


def all_imports() -> list[Import]:
    found = modules()
    known = set(found)
    return [imp for name, path in found.items() for imp in imports_of(name, path, known)]


def top(module: str) -> str:
    return module.split(".")[0]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_cycles_and_only_cycles() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]]
    assert cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_imports_are_read_from_every_module() -> None:
    """The tests below see the imports (a parser that found none would pass them all)."""
    imports = all_imports()
    assert any(i.module == "inference_service.__main__" and i.target == "ortserve_common.logs" for i in imports)
    of_main = {i.target for i in imports if i.module == "inference_service.__main__"}
    assert "inference_service.server.app" in of_main  # imported inside _serve
    assert "inference_service.models.paths" in of_main  # `from inference_service.models import paths`: the module
    assert any(i.module == "http_bridge.__main__" and top(i.target) == "ortserve_common" for i in imports)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_within_a_package(package: str) -> None:
    graph: dict[str, set[str]] = {}
    for imp in all_imports():
        if top(imp.module) == package and top(imp.target) == package:
            graph.setdefault(imp.module, set()).add(imp.target)
    assert cycles(graph) == []


def test_inference_service_never_imports_http_bridge() -> None:
    bad = [i for i in all_imports() if top(i.module) == "inference_service" and top(i.target) == "http_bridge"]
    assert bad == []


def test_http_bridge_imports_of_inference_service_only_the_api() -> None:
    bad = [
        i
        for i in all_imports()
        if top(i.module) == "http_bridge"
        and top(i.target) == "inference_service"
        and not (i.target + ".").startswith("inference_service.api.")
    ]
    assert bad == []


def test_ortserve_common_imports_neither_service_nor_anything_heavy() -> None:
    bad = [
        i
        for i in all_imports()
        if top(i.module) == "ortserve_common"
        and top(i.target) not in {"ortserve_common", "__future__", *COMMON_THIRD_PARTY}
        and top(i.target) not in sys.stdlib_module_names
    ]
    assert bad == []
