"""The package's shape: no import cycle, imports that follow the layers, small modules, a Spark-free exporter."""

from __future__ import annotations

import ast
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from stream.config import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "stream"
STAGES = ("source", "decode", "validate", "score", "encode", "sink")

# package -> the stream packages/modules it may import (besides itself)
ALLOWED = {
    "stream.contract": {"stream.config", "stream.errors", "stream.spec"},
    "stream.local": {"stream.config", "stream.credentials", "stream.errors", "stream.spec"},
    "stream.model": {"stream.config", "stream.errors", "stream.spec", "stream.contract"},
    "stream.pipeline": {"stream.config", "stream.errors", "stream.spec", "stream.contract", "stream.model"},
    "stream.monitor": {"stream.config", "stream.errors", "stream.spec", "stream.contract", "stream.pipeline.columns"},
    "stream.quality": {"stream.config", "stream.errors", "stream.spec", "stream.contract", "stream.monitor"},
    "stream.serve": {"stream.config", "stream.errors", "stream.spec", "stream.contract", "stream.model",
                     "stream.pipeline.columns"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every ``stream.*`` module a file imports, at any depth (lazy imports inside functions too)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "stream" or node.module.startswith("stream."):
                out.add(node.module)
                out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("stream"))
    return out


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def test_the_graph_sees_the_package():
    graph = _graph()
    assert {"stream.pipeline.decode", "stream.app.scorer", "stream.monitor.exporter", "stream.cli"} <= set(graph)
    assert "stream.pipeline.columns" in graph["stream.pipeline.decode"]


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert cycles == []


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_imports_only_its_lower_layers(package):
    graph = _graph()
    allowed = ALLOWED[package]
    bad = {
        (module, dep)
        for module, deps in graph.items()
        if module == package or module.startswith(package + ".")
        for dep in deps
        if not (dep == package or dep.startswith(package + ".") or dep == "stream"
                or any(dep == a or dep.startswith(a + ".") for a in allowed))
    }
    assert bad == set()


def test_the_stages_share_names_through_columns_never_each_other():
    graph = _graph()
    for stage in STAGES:
        deps = {d for d in graph[f"stream.pipeline.{stage}"] if d.startswith("stream.pipeline.")}
        assert deps <= {"stream.pipeline.columns", "stream.pipeline.trigger"}, (stage, deps)


def test_only_the_commands_reach_the_benchmark():
    graph = _graph()
    users = {m for m, deps in graph.items() if any(d.startswith("stream.bench") for d in deps)}
    assert {u for u in users if not u.startswith("stream.bench")} == {"stream.app.commands"}


def test_modules_stay_small():
    sizes = {p.relative_to(PROJECT_ROOT): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert max(sizes.values()) <= 350, max(sizes, key=lambda p: sizes[p])
    assert statistics.median(sizes.values()) <= 150


@pytest.mark.parametrize("module", ["stream.monitor.exporter", "stream.serve.app", "stream.app.servecmd"])
def test_the_exporter_and_the_http_service_import_no_pyspark(module):
    code = f"import {module}, sys; print(sorted(m for m in sys.modules if m.startswith('pyspark')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PROJECT_ROOT)
    assert out.stdout.strip() == "[]"


def test_bench_is_not_a_top_level_package(tmp_path):
    assert list((PROJECT_ROOT / "bench").rglob("*.py")) == []
    code = "import importlib.util as u; print(u.find_spec('bench'), u.find_spec('stream.bench.run') is not None)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.split() == ["None", "True"]
