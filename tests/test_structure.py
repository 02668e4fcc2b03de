"""The engine's import graph has no cycle, and the model zoo's families stand alone.

Read from the source with `ast`, not by importing it: an import inside a function counts as much as one at the
top of a module, since it closes a circle just the same the first time that function runs.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "engine" / "luciddream"


def module_files(root: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (a package is its __init__.py)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def lazy_exports(root: Path) -> dict[str, str]:
    """The top package's `_EXPORTS` (name -> module it is loaded from on first use), if it has one."""
    init = root / "__init__.py"
    tree = ast.parse(init.read_text(encoding="utf-8")) if init.exists() else ast.Module(body=[], type_ignores=[])
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and "_EXPORTS" in ast.unparse(node).split("=")[0]:
            return {key: f"{root.name}.{module}" for key, module in ast.literal_eval(node.value).items()}
    return {}


def imports_of(name: str, path: Path, known: set[str], exports: dict[str, str]) -> set[str]:
    """The package's modules that `name` imports anywhere in its source. `from luciddream import dream` counts as
    importing the module that the package loads `dream` from."""
    is_package = path.name == "__init__.py"
    top = name.partition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from pkg import mod` imports the module pkg.mod; `from mod import thing` imports mod
            targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in known
                       else exports.get(alias.name, source) if source == top else source for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` where only a.b is ours: a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    files = module_files(root)
    exports = lazy_exports(root)
    return {name: imports_of(name, path, set(files), exports) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path that starts and ends at the same module, or None (depth-first search)."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path = [start]
        pending = [iter(sorted(graph[start]))]   # pending[k]: what path[k] imports and is not yet explored
        while pending:
            nxt = next(pending[-1], None)
            if nxt is None:
                pending.pop()
                done.add(path.pop())
            elif nxt in path:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in done and nxt in graph:
                path.append(nxt)
                pending.append(iter(sorted(graph[nxt])))
    return None


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]


def test_the_graph_sees_relative_and_function_level_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text('_EXPORTS = {"lazy": "one"}\n')
    (pkg / "one.py").write_text("from . import two\n")
    (pkg / "four.py").write_text("from pkg import lazy, sub\n")
    (pkg / "two.py").write_text("def later():\n    from .sub.three import thing\n")
    (pkg / "sub" / "__init__.py").write_text("from .three import thing\n")
    (pkg / "sub" / "three.py").write_text("import pkg.one\nfrom .. import one\nthing = 1\n")
    graph = import_graph(pkg)
    assert graph == {"pkg": set(), "pkg.one": {"pkg.two"}, "pkg.two": {"pkg.sub.three"},
                     "pkg.four": {"pkg.one", "pkg.sub"}, "pkg.sub": {"pkg.sub.three"}, "pkg.sub.three": {"pkg.one"}}
    cycle = find_cycle(graph)
    assert cycle[0] == cycle[-1] and sorted(cycle[1:]) == ["pkg.one", "pkg.sub.three", "pkg.two"]


def test_no_module_of_the_engine_imports_in_a_circle():
    graph = import_graph()
    assert "luciddream.nets.zoo" in graph and "luciddream.render" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_network_families_import_only_the_base_and_nothing_imports_the_registry_back():
    graph = import_graph()
    nets = {name for name in graph if name.startswith("luciddream.nets.")}
    for family in nets - {"luciddream.nets.zoo"}:
        assert graph[family] & nets <= {"luciddream.nets.base", "luciddream.nets.trunk"}, family
    assert [name for name, targets in graph.items() if "luciddream.nets.zoo" in targets] == ["luciddream.nets"]


# ------------------------------------------------------------------------------------------- the adapters' borders

ROOT = PACKAGE.parents[1]
HOST_API = {"gimp_plugin": {"gi"}, "krita_plugin": {"krita", "PyQt5", "PyQt6"}}


def top_level_imports(path: Path) -> set[str]:
    """The first names of every absolute import in a file (relative ones stay inside its own package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
    return names


def relative_imports(path: Path) -> set[str]:
    """The sibling modules a file of a package imports relatively (`from . import kit`, `from .kit import X`)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names.update([node.module.partition(".")[0]] if node.module else [a.name for a in node.names])
    return names


def test_adapters_import_only_the_stdlib_their_host_the_kit_and_the_protocol():
    """The editors' Pythons have no torch and often no numpy, and the two adapters share nothing but the kit and the
    protocol package that install.py copies beside them: no engine module, no code of the other adapter."""
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for adapter, host in HOST_API.items():
        folder = ROOT / adapter / "luciddream"
        # its own modules, but not the name `luciddream`: absolutely imported, that would be the engine
        own = {p.stem for p in folder.glob("*.py")} - {"luciddream", "__init__"}
        for path in folder.glob("*.py"):
            outside = top_level_imports(path) - stdlib - host - {"kit", "protocol"} - own
            assert not outside, f"{adapter}/{path.name} imports {sorted(outside)}"
            siblings = relative_imports(path) - own - {"kit", "protocol"}
            assert not siblings, f"{adapter}/{path.name} imports {sorted(siblings)} relatively"


def test_the_border_check_sees_a_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    import numpy\n    from luciddream.render import dream\n"
                   "    from .engine_bits import x\n")
    assert top_level_imports(bad) == {"numpy", "luciddream"}
    assert relative_imports(bad) == {"engine_bits"}
