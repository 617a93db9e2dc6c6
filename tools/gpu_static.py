#!/usr/bin/env python
"""Static check of the GPU kernels: compile, assemble, count registers, spills and occupancy.

Every numba.cuda kernel specialisation that the workload suites (fastconv/testing/workloads/*.json)
use, their gradients included (conv input, weight and bias gradients, pooling and pyramid
gradients, and the casts the gradient paths run on the side) -- under every GPU algorithm that can serve
each layer, in the workloads' float32 channels-first form -- is compiled to PTX with
``numba.cuda.compile_ptx`` for sm_80 and sm_90, using the same options the kernels run
with (fastconv.cuda._jit), and assembled with ``ptxas -v`` (``$PTXAS``, the
``nvidia-cuda-nvcc`` pip package's, or the one on the PATH). The register,
spill, stack and shared-memory figures it prints are parsed, and theoretical
occupancy is computed per kernel and architecture (the CUDA occupancy calculator's
rules: registers allocated per warp in units of 256, 1 KB of shared memory reserved
per block, 64 warps / 2048 threads / 32 blocks per SM; 164 KB of shared memory per SM
on sm_80, 228 KB on sm_90).

``compile_ptx`` loads NVVM and NVRTC (numba-cuda 0.30 fails with "Failure finding
libnvrtc.so.13" without it): the ``gpu-static`` extra brings both (``nox -s gpu_static``). In
an environment without NVRTC, ``pip install nvidia-cuda-nvrtc==13.0.* --target DIR`` and run
with ``LD_LIBRARY_PATH=DIR/nvidia/cu13/lib``.

Writes reports/gpu_static.md and reports/gpu_static.json; exits 1 on any register
spill (or a kernel that fails to compile or assemble). No GPU is needed; do not run
it under NUMBA_ENABLE_CUDASIM.

    python tools/gpu_static.py [--suite resnet50 ...] [--arch sm_90 ...]
        [--dtype float16 --dtype float64 ...] [--layout channels_last ...]

The default run (the one that must pass) covers the workloads as they are: float32,
channels-first. The other dtypes and layouts build further specialisations of the
same kernels; pass --dtype/--layout to check those too (slower).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "reports"

ARCHS = {
    "sm_80": dict(cc=(8, 0), smem_sm=164 * 1024, gpu="A100"),
    "sm_90": dict(cc=(9, 0), smem_sm=228 * 1024, gpu="H100"),
}
REGS_SM = 65536
REG_UNIT = 256  # registers are allocated per warp in units of 256
MAX_WARPS_SM = 64
MAX_BLOCKS_SM = 32
SMEM_RESERVED = 1024  # per block, sm_80 and later
SMEM_UNIT = 128


# ---- workload layers -> specs -------------------------------------------------------

def workload_calls(suites=None):
    """(suite, layer, family, spec) for every kernel call the workload layers make."""
    from fastconv.grad.conv import weight_grad_spec
    from fastconv.spec.conv import resolve_conv
    from fastconv.spec.pool import resolve_adaptive_pool, resolve_pool
    from fastconv.testing import workloads

    for suite in workloads.suite_names():
        if suites and suite not in suites:
            continue
        for layer in workloads.layers(suite):
            op, name, shape = layer["op"], layer["name"], tuple(layer["input"])
            nd = len(shape) - 2
            padding = layer.get("padding", 0)
            if isinstance(padding, list):
                padding = tuple(tuple(p) if isinstance(p, list) else p for p in padding)
            if op.startswith("conv"):
                args = {k: layer[k] for k in ("stride", "dilation", "groups", "output_padding") if k in layer}
                spec = resolve_conv(op, shape, layer["weight"], padding=padding, **args)
                yield suite, name, "conv_transpose" if spec.transposed else "conv", spec
                # backward: the input gradient (the adjoint conv through the forward table, or its own kernel)
                # and the weight gradient
                yield suite, name + ".igrad", "conv_input_grad", spec
                yield suite, name + ".wgrad", "conv_weight_grad", weight_grad_spec(spec)
                yield suite, name + ".bgrad", "conv_bias_grad", BiasGrad(spec.out_channels)
            elif op == "separable_conv2d":
                dw, pw = layer["depthwise_weight"], layer["pointwise_weight"]
                spec = resolve_conv("conv2d", shape, dw, stride=layer.get("stride", 1), padding=padding,
                                    groups=shape[1])
                yield suite, name + ".dw", "conv", spec
                hidden = (shape[0], dw[0], *spec.out_size)
                yield suite, name + ".pw", "conv", resolve_conv("conv2d", hidden, pw)
            elif op in ("global_avg_pool", "global_max_pool"):
                mode = op.split("_")[1]
                yield suite, name, "adaptive_pool", resolve_adaptive_pool(op, mode, nd, shape, 1)
            elif op.startswith("adaptive_"):
                mode = op.split("_")[1]
                yield suite, name, "adaptive_pool", resolve_adaptive_pool(op, mode, nd, shape, layer["output_size"])
            elif op == "spatial_pyramid_pool":
                levels, mode = tuple(layer.get("levels", (1, 2, 4))), layer.get("mode", "max")
                for level in levels:
                    spec = resolve_adaptive_pool(op, mode, nd, shape, level)
                    yield suite, f"{name}.l{level}", "adaptive_pool", spec
                yield suite, name + ".grad", "pyramid_pool_grad", PyramidGrad(shape, levels, mode)
            elif re.fullmatch(r"(max|avg|lp)_pool[123]d", op):
                mode = op.split("_")[0]
                yield suite, name, "pool", resolve_pool(
                    op, mode, nd, shape, layer["kernel_size"], layer.get("stride"), padding,
                    layer.get("dilation", 1), ceil_mode=layer.get("ceil_mode", False),
                    norm_type=layer.get("norm_type", 2.0))
            else:
                raise ValueError(f"{suite}: layer {name}: op {op!r} is not known to gpu_static")


@dataclass(frozen=True)
class PyramidGrad:
    """spatial_pyramid_pool's gradient (one kernel over every level; no dispatch family)."""

    input_shape: tuple
    levels: tuple
    mode: str
    dtype: str = "float32"
    channels_last: bool = False

    def launches(self):
        from fastconv.cuda.pool_pyramid_grad import pyramid_launch

        return [pyramid_launch(self.mode, self.dtype, self.channels_last, math.prod(self.input_shape))]


@dataclass(frozen=True)
class BiasGrad:
    """A conv layer's bias gradient (fastconv.grad.conv_bias; no dispatch family)."""

    channels: int
    dtype: str = "float32"
    channels_last: bool = False

    def launches(self):
        from fastconv.cuda.bias_grad import bias_grad_launch

        return [bias_grad_launch(self.channels, self.dtype, self.channels_last)]


def helper_launches(dtypes):
    """Kernels the gradient paths run on the side, with no workload layer of their own: the
    casts of fastconv.cuda.cast (|x| for Lp pooling's p = inf routing; float16 weights and
    inputs widened to float32)."""
    from fastconv.cuda._jit import elementwise
    from fastconv.cuda.cast import cast_kernel

    out = [elementwise(cast_kernel(d, d, True), 1 << 20, "|x| (Lp p=inf gradient)") for d in dtypes]
    out.append(elementwise(cast_kernel("float16", "float32", False), 1 << 20, "float16 widened to float32"))
    return out


def with_gradients(calls):
    """The calls, each pooling layer followed by its input gradient (families pool_grad and
    adaptive_pool_grad run on the forward's spec; a pyramid's levels have one gradient kernel,
    listed by workload_calls)."""
    for suite, layer, family, spec in calls:
        yield suite, layer, family, spec
        if family in ("pool", "adaptive_pool") and spec.op != "spatial_pyramid_pool":
            yield suite, layer + ".grad", family + "_grad", spec


def variants(calls, dtypes=("float32",), layouts=("channels_first",)):
    """The calls again in other dtypes and layouts (the workloads are float32, channels-first)."""
    import dataclasses

    for suite, layer, family, spec in calls:
        for dtype in dtypes:
            for layout in layouts:
                yield suite, layer, family, dataclasses.replace(
                    spec, dtype=dtype, channels_last=layout == "channels_last")


def kernel_uses(suites=None, dtypes=("float32",), layouts=("channels_first",)):
    """{kernel name: (Kernel, [(suite, layer, algo, Launch, auto?)])} over the workloads."""
    import fastconv.cuda as fc
    from fastconv.dispatch import auto_algorithm, capable

    uses = {}
    for suite, layer, family, spec in variants(with_gradients(workload_calls(suites)), dtypes, layouts):
        if isinstance(spec, (PyramidGrad, BiasGrad)):
            for launch in spec.launches():
                entry = uses.setdefault(launch.kernel.name, (launch.kernel, []))
                entry[1].append((suite, layer, "gather" if isinstance(spec, PyramidGrad) else "sum", launch, True))
            continue
        names = capable(family, "cuda", spec)
        auto = auto_algorithm(family, "cuda", spec, names)
        for algo in names:
            for launch in fc.launches(family, algo, spec):
                entry = uses.setdefault(launch.kernel.name, (launch.kernel, []))
                entry[1].append((suite, layer, algo, launch, algo == auto))
    for launch in helper_launches(dtypes):
        entry = uses.setdefault(launch.kernel.name, (launch.kernel, []))
        entry[1].append(("helpers", launch.what, "cast", launch, False))
    return uses


# ---- compile, assemble, parse --------------------------------------------------------

def find_ptxas() -> str:
    """$PTXAS, else the nvidia-cuda-nvcc pip package's, else ptxas on the PATH (a CUDA toolkit)."""
    if os.environ.get("PTXAS"):
        return os.environ["PTXAS"]
    try:
        import nvidia

        for base in nvidia.__path__:
            for candidate in sorted(Path(base).glob("*/bin/ptxas")):
                return str(candidate)
    except ImportError:
        pass
    found = shutil.which("ptxas")
    if found:
        return found
    raise SystemExit("gpu_static: ptxas not found; install the nvidia-cuda-nvcc pip package, put a CUDA "
                     "toolkit's ptxas on the PATH, or set PTXAS")


_ENTRY = re.compile(r"Compiling entry function '([^']+)'")
_PROPS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_BARRIERS = re.compile(r"used (\d+) barriers")
_SMEM = re.compile(r"(\d+) bytes smem")


def parse_ptxas(text: str) -> dict:
    """The entry function's figures from ``ptxas -v`` output."""
    result = dict(registers=None, stack=0, spill_stores=0, spill_loads=0, smem=0, barriers=0)
    in_entry = False
    for line in text.splitlines():
        if _ENTRY.search(line):
            in_entry = True
        elif in_entry and (m := _PROPS.search(line)):
            result.update(stack=int(m[1]), spill_stores=int(m[2]), spill_loads=int(m[3]))
        elif in_entry and (m := _USED.search(line)):
            barriers, smem = _BARRIERS.search(line), _SMEM.search(line)
            result.update(registers=int(m[1]), barriers=int(barriers[1]) if barriers else 0,
                          smem=int(smem[1]) if smem else 0)
            in_entry = False
    if result["registers"] is None:
        raise ValueError("no 'Used N registers' line for the entry function:\n" + text)
    return result


def occupancy(registers: int, threads: int, smem: int, arch: str) -> dict:
    warps = math.ceil(threads / 32)
    regs_per_warp = math.ceil(registers * 32 / REG_UNIT) * REG_UNIT
    by_regs = (REGS_SM // regs_per_warp) // warps if regs_per_warp else MAX_BLOCKS_SM
    per_block_smem = math.ceil((smem + SMEM_RESERVED) / SMEM_UNIT) * SMEM_UNIT
    by_smem = ARCHS[arch]["smem_sm"] // per_block_smem
    by_warps = MAX_WARPS_SM // warps
    limits = {"registers": by_regs, "shared memory": by_smem, "warps": by_warps, "blocks": MAX_BLOCKS_SM}
    blocks = min(limits.values())
    limiter = min(limits, key=lambda k: (limits[k], k != "warps"))
    return dict(blocks_per_sm=blocks, occupancy=blocks * warps / MAX_WARPS_SM, limiter=limiter)


def ptxas_version() -> str:
    try:
        out = subprocess.run([find_ptxas(), "--version"], capture_output=True, text=True).stdout
    except OSError:
        return "ptxas"
    release = re.search(r"release [\d.]+", out)
    return f"ptxas {release[0]}" if release else "ptxas"


def compile_and_assemble(kernel, arch: str, ptxas: str, workdir: Path) -> dict:
    from numba import cuda

    from fastconv.cuda._jit import compile_options

    t0 = time.perf_counter()
    ptx, _ = cuda.compile_ptx(kernel.py_func, kernel.argtypes, cc=ARCHS[arch]["cc"],
                              **compile_options(kernel))
    t1 = time.perf_counter()
    src = workdir / f"{kernel.name}.{arch}.ptx"
    src.write_text(ptx)
    proc = subprocess.run([ptxas, "-v", f"-arch={arch}", str(src), "-o", os.devnull],
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"ptxas failed for {kernel.name} ({arch}):\n{proc.stderr}")
    info = parse_ptxas(proc.stderr)
    info.update(occupancy(info["registers"], kernel.threads, info["smem"], arch))
    info.update(compile_s=round(t1 - t0, 2), ptx_lines=ptx.count("\n"))
    return info


# ---- report --------------------------------------------------------------------------

def write_reports(rows, archs, failures, elapsed):
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "gpu_static.json").write_text(json.dumps(
        dict(archs=archs, kernels=rows, failures=failures, seconds=round(elapsed, 1)), indent=1))
    spills = [r for r in rows for a in archs if r[a]["spill_stores"] or r[a]["spill_loads"]]
    lines = [
        "# GPU kernels: static resources (ptxas -v)",
        "",
        "Generated by `python tools/gpu_static.py`: every numba.cuda kernel specialisation the "
        "workload suites use (fastconv/testing/workloads/*.json, float32, channels-first, every GPU "
        "algorithm that can serve each layer), their gradients included (layer names `.igrad`, "
        "`.wgrad`, `.bgrad`, `.grad`: conv input, weight and bias gradients, pooling and pyramid gradients; "
        "the casts the gradient paths run on the side are listed once, as `helpers`), "
        f"compiled with `numba.cuda.compile_ptx` and assembled with `ptxas -v` ({ptxas_version()}). "
        "Occupancy is theoretical "
        "(registers per warp in units of 256, 1 KB shared memory reserved per block, 64 warps, "
        "2048 threads and 32 blocks per SM; 164 KB shared memory per SM on sm_80, 228 KB on "
        "sm_90). Nothing here was run on a GPU.",
        "",
        f"{len(rows)} kernels, {len(failures)} failures, "
        f"{len(spills)} with register spills. Took {elapsed:.0f} s.",
        "",
    ]
    head = "| kernel | threads | " + " | ".join(
        f"{a} regs | {a} spill st/ld B | {a} stack B | {a} smem B | {a} occupancy (limit)" for a in archs
    ) + " | layers (auto) |"
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        cells = [f"`{r['name']}`", str(r["threads"])]
        for a in archs:
            x = r[a]
            cells += [str(x["registers"]), f"{x['spill_stores']}/{x['spill_loads']}", str(x["stack"]),
                      str(x["smem"]), f"{100 * x['occupancy']:.0f}% ({x['blocks_per_sm']} blk, {x['limiter']})"]
        cells.append(f"{r['layers']} ({r['auto_layers']})")
        lines.append("| " + " | ".join(cells) + " |")
    if failures:
        lines += ["", "## Failures", ""] + [f"- `{f['name']}` {f['arch']}: {f['error'][:300]}" for f in failures]
    lines += ["", "Stack bytes without spills are local arrays the compiler kept in local memory "
              "on purpose (the GEMM epilogue's copy of its accumulators).", ""]
    (REPORTS / "gpu_static.md").write_text("\n".join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", action="append", help="workload suite(s); default: all")
    parser.add_argument("--arch", action="append", choices=sorted(ARCHS), help="default: sm_80 and sm_90")
    parser.add_argument("--dtype", action="append", choices=("float16", "float32", "float64"),
                        help="also compile the layers in these dtypes; default: float32, as the workloads")
    parser.add_argument("--layout", action="append", choices=("channels_first", "channels_last"),
                        help="default: channels_first, as the workloads")
    args = parser.parse_args(argv)
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        raise SystemExit("gpu_static: unset NUMBA_ENABLE_CUDASIM; the simulator does not compile PTX")
    archs = args.arch or ["sm_80", "sm_90"]
    ptxas = find_ptxas()
    start = time.perf_counter()
    uses = kernel_uses(args.suite, args.dtype or ("float32",), args.layout or ("channels_first",))
    rows, failures = [], []
    with tempfile.TemporaryDirectory(prefix="gpu_static_") as tmp:
        for i, (name, (kernel, users)) in enumerate(sorted(uses.items())):
            row = dict(name=name, threads=kernel.threads, static_shared=kernel.shared_bytes,
                       layers=len({(s, layer) for s, layer, *_ in users}),
                       auto_layers=len({(s, layer) for s, layer, _, _, auto in users if auto}),
                       used_by=sorted({f"{s}:{layer}:{algo}" for s, layer, algo, _, _ in users}))
            for arch in archs:
                try:
                    row[arch] = compile_and_assemble(kernel, arch, ptxas, Path(tmp))
                except Exception as exc:  # noqa: BLE001  (reported, and the run fails)
                    failures.append(dict(name=name, arch=arch, error=f"{type(exc).__name__}: {exc}"))
            if all(a in row for a in archs):
                rows.append(row)
                x = row[archs[-1]]
                print(f"[{i + 1}/{len(uses)}] {name}: {x['registers']} regs, spills "
                      f"{x['spill_stores']}/{x['spill_loads']} B, {100 * x['occupancy']:.0f}% occupancy "
                      f"({archs[-1]})", flush=True)
            else:
                print(f"[{i + 1}/{len(uses)}] {name}: FAILED", flush=True)
    elapsed = time.perf_counter() - start
    write_reports(rows, archs, failures, elapsed)
    spilled = [r["name"] for r in rows for a in archs if r[a]["spill_stores"] or r[a]["spill_loads"]]
    print(f"wrote {REPORTS / 'gpu_static.md'}: {len(rows)} kernels, {len(failures)} failures, "
          f"{len(spilled)} spilling")
    if spilled or failures:
        for name in spilled:
            print(f"SPILL: {name}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
