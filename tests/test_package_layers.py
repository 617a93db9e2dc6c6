"""The package's layers: the GPU kernels and their shared helpers never load the CPU backend,
and ``import fastconv`` loads no backend at all."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fastconv"


def _imported_modules(path: Path, package: str) -> set[str]:
    """Absolute names of the fastconv modules that a source file imports, at any depth."""
    tree = ast.parse(path.read_text())
    parts = package.split(".")
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[: len(parts) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.startswith("fastconv")}


def _package_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] != "__init__" else parts)


def test_cuda_and_kernels_import_no_cpu_module():
    for folder in ("cuda", "kernels"):
        for path in sorted((PACKAGE / folder).rglob("*.py")):
            bad = {m for m in _imported_modules(path, _package_of(path)) if m.startswith("fastconv.cpu")}
            assert not bad, f"{path.relative_to(PACKAGE.parent)} imports {sorted(bad)}"


def test_kernels_import_no_backend():
    for path in sorted((PACKAGE / "kernels").rglob("*.py")):
        bad = {m for m in _imported_modules(path, _package_of(path)) if m.startswith("fastconv.cuda")}
        assert not bad, f"{path.relative_to(PACKAGE.parent)} imports {sorted(bad)}"


def test_gpu_call_loads_no_cpu_backend():
    """A call on a CUDA array (here under the simulator) never imports fastconv.cpu, so it starts
    no CPU thread pool."""
    script = textwrap.dedent("""
        import json, sys
        import numpy as np
        from numba import cuda
        import fastconv as F
        x = cuda.to_device(np.ones((1, 2, 5, 5), np.float32))
        w = cuda.to_device(np.ones((3, 2, 3, 3), np.float32))
        y = F.conv2d(x, w, padding=1)
        p = F.max_pool2d(x, 2)
        print(json.dumps({"out": [list(y.shape), list(p.shape)],
                          "cpu": sorted(m for m in sys.modules if m.startswith("fastconv.cpu"))}))
    """)
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["out"] == [[1, 3, 5, 5], [1, 2, 2, 2]]
    assert seen["cpu"] == []


def test_import_fastconv_loads_no_backend():
    """Nor torch (fastconv.torch is imported only by name) nor dask."""
    script = ("import sys, fastconv; print(sorted(m for m in sys.modules if m.startswith(('fastconv.cpu', "
              "'fastconv.cuda', 'fastconv.kernels', 'fastconv.torch', 'fastconv.dask', 'numba', 'torch', 'dask'))))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_kernels_key_their_ir_builders_revision_by_closure():
    """A compiled kernel that calls an IR-builder intrinsic must take the builder's REVISION as a
    closure constant of its factory: Numba's disk-cache key covers closure cells but not module
    globals, so a global REVISION lets an edited builder be served stale machine code."""
    offenders = []
    for path in sorted((PACKAGE / "cpu").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for factory in ast.walk(tree):
            if not isinstance(factory, ast.FunctionDef):
                continue
            for inner in factory.body:
                if not isinstance(inner, ast.FunctionDef):
                    continue
                offenders += [f"{path.relative_to(PACKAGE)}:{node.lineno} {node.id}" for node in ast.walk(inner)
                              if isinstance(node, ast.Name) and node.id.endswith("REVISION")]
    assert not offenders, offenders
