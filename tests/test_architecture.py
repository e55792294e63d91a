"""The layout holds: no import cycle between rag's rooms (and ingest), Streamlit only in the UI, and the entry points
start. Imports are read with `ast` from the source files, nothing is imported."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ("rag.core", "rag.llm", "rag.store", "rag.search", "rag.chat", "rag.evaluation", "rag.ui", "ingest")
STREAMLIT_ALLOWED = ("rag/ui/", "app.py", "pages/")


@dataclass(frozen=True)
class Import:
    """One import in our code: the file, line and text of its statement, the importing module and the imported one."""

    path: str
    line: int
    source: str
    importer: str
    module: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.source}"


def source_files() -> list[Path]:
    """Every Python file of rag/, ingest/ and pages/, and app.py."""
    return sorted([*(ROOT / "rag").rglob("*.py"), *(ROOT / "ingest").rglob("*.py"), *(ROOT / "pages").glob("*.py"),
                   ROOT / "app.py"])


def module_name(path: Path) -> str:
    """The dotted module name of a file: rag/search/loader.py is rag.search.loader, rag/ui/__init__.py is rag.ui."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    """True when a dotted name is one of our modules or packages."""
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_modules(node: ast.Import | ast.ImportFrom, module: str, package: bool) -> list[str]:
    """The modules an import statement brings in; `from package import submodule` names the submodule."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = module.split(".") if package else module.split(".")[:-1]
    prefix = ".".join(base[: len(base) - node.level + 1] if node.level else [])
    origin = ".".join(part for part in (prefix, node.module) if part)
    named = [f"{origin}.{alias.name}" if is_module(f"{origin}.{alias.name}") else origin for alias in node.names]
    return list(dict.fromkeys(named))


def imports() -> list[Import]:
    """Every import statement (at any depth: in functions, under TYPE_CHECKING) of every source file."""
    found = []
    for path in source_files():
        text = path.read_text()
        lines = text.splitlines()
        module, package = module_name(path), path.name == "__init__.py"
        for node in ast.walk(ast.parse(text, str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                shown = " ".join(line.strip() for line in lines[node.lineno - 1 : node.end_lineno])
                for target in imported_modules(node, module, package):
                    found.append(Import(str(path.relative_to(ROOT)), node.lineno, shown, module, target))
    return found


def room(module: str) -> str:
    """The room a module of ours belongs to; a module in none (an entry point such as rag.ask) stands alone."""
    return next((name for name in ROOMS if module == name or module.startswith(name + ".")), module)


def room_graph() -> dict[tuple[str, str], list[Import]]:
    """(importing room, imported room) -> the imports that make that edge, for imports between two of our rooms."""
    edges = defaultdict(list)
    for found in imports():
        source, target = room(found.importer), room(found.module)
        if source != target and is_module(found.module.split(".")[0]):
            edges[source, target].append(found)
    return edges


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every room that start's imports lead to, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for target in graph.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def cycles(edges) -> list[list[str]]:
    """The groups of rooms that each lead to all the others (strongly connected, two or more), each sorted."""
    graph = defaultdict(set)
    for source, target in edges:
        graph[source].add(target)
    reach = {node: reachable(graph, node) for node in list(graph)}
    groups = {tuple(sorted(other for other in reach[node] if node in reach.get(other, ()))) for node in reach
              if node in reach[node]}
    return sorted(list(group) for group in groups)


def closing(group: list[str], edges) -> list[tuple[str, str]]:
    """The edges of a cycle group whose removal alone leaves the group without a cycle (the likely wrong import)."""
    inside = [edge for edge in edges if edge[0] in group and edge[1] in group]
    return [edge for edge in inside if not cycles([other for other in inside if other != edge])]


def describe(group: list[str], edges) -> str:
    """A cycle group as its edges, each with the import lines that make it; an edge that alone closes it comes first."""
    first = closing(group, edges)
    rest = sorted(edge for edge in edges if edge[0] in group and edge[1] in group and edge not in first)
    lines = [f"import cycle between {', '.join(group)}:"]
    for edge in first + rest:
        note = "  (removing this edge alone breaks the cycle)" if edge in first else ""
        lines += [f"  {edge[0]} -> {edge[1]}{note}", *(f"    {found}" for found in edges[edge])]
    return "\n".join(lines)


def test_the_import_walk_sees_every_room_and_the_entry_points():
    edges = room_graph()
    nodes = {node for edge in edges for node in edge}

    assert set(ROOMS) <= nodes
    assert {"rag.ask", "rag.eval", "app", "pages.1_Models"} <= nodes
    assert [str(found) for found in edges["rag.ask", "rag.chat"]] == ["rag/ask.py:4: from rag.chat.ask import main"]


def test_no_import_cycle_between_rooms():
    edges = room_graph()

    found = cycles(edges)

    assert found == [], "\n".join(describe(group, edges) for group in found)


def test_streamlit_is_imported_only_by_the_ui_the_app_and_its_pages():
    outside = [str(found) for found in imports()
               if found.module.split(".")[0] == "streamlit" and not found.path.startswith(STREAMLIT_ALLOWED)]

    assert outside == [], "streamlit imported outside rag/ui/, app.py and pages/:\n" + "\n".join(outside)


@pytest.mark.parametrize("module", ["rag.ask", "rag.eval", "ingest"])
def test_each_command_line_entry_point_prints_its_help(tmp_path, module):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    result = subprocess.run([sys.executable, "-m", module, "--help"], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)

    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout.startswith(f"usage: python -m {module} ")
