"""The package's modules form layers (issue 20): no module imports one that imports it back,
whether at import time or from inside a function — the schedule ⇄ sampler cycle is gone —,
except the upward conveniences listed in UPWARD. Read from the sources with ast, so a lazy
import inside a function counts too; imports under `if TYPE_CHECKING:` do not (annotations only).
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "python" / "swiftddpm"

# (importer, imported): a constructor of a lower module that builds on a higher one, imported
# inside the function that needs it.
UPWARD = {
    ("sampler", "diffusers"),  # Scheduler.from_diffusers reads a config with swiftddpm.diffusers
}


def module_imports(path: Path) -> dict[str, bool]:
    """{module of the package it imports: whether every import of it is inside a function}."""
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    found: dict[str, bool] = {}

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
            for name in names:
                if name in modules:
                    found[name] = found.get(name, True) and in_function
        inside = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(ast.parse(path.read_text()), False)
    return found


def import_graph() -> dict[str, set[str]]:
    return {p.stem: set(module_imports(p)) for p in PACKAGE.glob("*.py")}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the directed graph (its nodes in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_cycles():
    # Negative controls: the finder sees a two-module cycle, a longer one, and a lazy import.
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    lazy = module_imports(PACKAGE / "sampler.py")
    assert lazy.get("diffusers") is True, "the lazy import of Scheduler.from_diffusers is seen"


def test_the_modules_import_each_other_without_a_cycle():
    graph = import_graph()
    for importer, imported in UPWARD:
        assert imported in graph[importer], f"UPWARD lists {importer} -> {imported}, which is gone: drop it"
        assert module_imports(PACKAGE / f"{importer}.py")[imported], f"{importer} imports {imported} at import time"
        graph[importer].discard(imported)
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_schedule_builds_on_sampler_not_the_reverse():
    graph = import_graph()
    assert "sampler" in graph["schedule"] and "schedule" not in graph["sampler"]



# ---- The Swift folders (Sources/DDPM) form layers too: tools/folder_graph.py -------------------

def run_folder_graph(root: Path):
    import subprocess
    import sys
    return subprocess.run([sys.executable, str(REPO / "tools" / "folder_graph.py"), str(root)],
                          capture_output=True, text=True, timeout=120)


def test_the_swift_folders_have_no_cycle():
    result = run_folder_graph(REPO / "Sources" / "DDPM")
    assert result.returncode == 0 and result.stdout.rstrip().endswith("cycles: none"), result.stdout


def test_the_folder_graph_sees_a_cycle(tmp_path):
    # Negative control: two folders that use each other's types, and a third that only uses one.
    for folder, text in {"Alpha": "struct Alpha { let b: Beta }\n",
                         "Beta": "struct Beta { func make() -> Alpha { fatalError() } }\n",
                         "Gamma": "struct Gamma { let a: Alpha }\n"}.items():
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"{folder}.swift").write_text(text)
    result = run_folder_graph(tmp_path)
    assert result.returncode == 1 and result.stdout.rstrip().endswith("cycles: Alpha Beta"), result.stdout
