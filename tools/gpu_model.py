#!/usr/bin/env python
"""A performance MODEL of the GPU kernels on an H100 SXM -- not a measurement.

For every layer of the workload suites (fastconv/testing/workloads/*.json, float32,
channels-first, the algorithm ``algo="auto"`` picks on the GPU) this computes, from
the ConvSpec / PoolSpec alone:

- FLOPs (a multiply-add counts 2; pooling: one operation per tap);
- bytes: the compulsory minimum (read input and weights, write output) and the
  traffic the fastconv kernel sequence moves (the padded working copy, im2col
  columns, packed weights...), each kernel reading its inputs from DRAM once;
- arithmetic intensity for both, and the roofline time
  max(FLOPs / peak FP32, bytes / HBM bandwidth), per kernel and summed per layer,
  with each kernel's peaks scaled by its grid fill min(1, blocks / 132 SMs): a grid
  of 14 blocks can use 14 SMs at most;
- each kernel's launch configuration (grid x block, static shared memory) and, when
  reports/gpu_static.json exists, its theoretical occupancy on sm_90 and the number
  of waves the grid takes on 132 SMs.

Peak figures, from NVIDIA's H100 Tensor Core GPU datasheet (H100 SXM5 column,
https://www.nvidia.com/en-us/data-center/h100/): FP32 67 TFLOPS (CUDA cores; these
kernels use no tensor cores), FP64 34 TFLOPS, HBM3 3.35 TB/s, 132 SMs. Launch
latency (a few microseconds per kernel) is not modelled. No GPU number here was
measured.

    python tools/gpu_model.py   ->  reports/gpu_model.md, reports/gpu_model.json
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_static import REPORTS, workload_calls  # noqa: E402

PEAK_FP32 = 67e12  # FLOP/s, H100 SXM5, NVIDIA datasheet
PEAK_FP64 = 34e12
HBM_BW = 3.35e12  # B/s, HBM3, H100 SXM5, NVIDIA datasheet
SMS = 132
SOURCE = "NVIDIA H100 Tensor Core GPU datasheet, H100 SXM5: FP32 67 TFLOPS, FP64 34 TFLOPS, HBM3 3.35 TB/s, 132 SMs"

_ITEM = {"float16": 2, "float32": 4, "float64": 8}


def _work_item(dtype: str) -> int:
    return 8 if dtype == "float64" else 4


def conv_launch_cost(spec, launch) -> tuple[float, float]:
    """(FLOPs, bytes) of one kernel of a conv call, each input read from DRAM once."""
    item, work = _ITEM[spec.dtype], _work_item(spec.dtype)
    in_elems = math.prod(spec.input_shape)
    out_elems = math.prod(spec.output_shape)
    w_elems = math.prod(spec.weight_shape)
    padded = spec.batch * spec.in_channels * math.prod(n + b + e for n, (b, e) in zip(spec.in_size, spec.pads))
    if spec.transposed:
        padded = in_elems
    what = launch.what
    rows = spec.batch * math.prod(spec.out_size)
    cols = spec.in_channels * math.prod(spec.kernel)
    if what.startswith("pad"):
        return 0.0, in_elems * item + padded * work
    if what == "pack weight":
        return 0.0, w_elems * (item + work)
    if what == "im2col":
        return 0.0, padded * work + rows * cols * work
    if what.startswith("gemm"):
        a_bytes = (rows * cols if not (spec.is_pointwise and all(s == 1 for s in spec.stride)) else padded) * work
        return spec.flops, a_bytes + w_elems * work + out_elems * item
    # direct, depthwise, conv_transpose: working input, weights, output
    return spec.flops, padded * work + w_elems * item + out_elems * item


def pool_launch_cost(spec, launch) -> tuple[float, float]:
    item = _ITEM[spec.dtype]
    idx = 8 * math.prod(spec.output_shape) if getattr(spec, "return_indices", False) else 0
    return spec.flops, (math.prod(spec.input_shape) + math.prod(spec.output_shape)) * item + idx


def roofline(flops: float, nbytes: float, dtype: str, fill: float = 1.0) -> float:
    """max(compute time, memory time) on ``fill`` of the GPU's SMs."""
    peak = PEAK_FP64 if dtype == "float64" else PEAK_FP32
    return max(flops / (peak * fill), nbytes / (HBM_BW * fill))


def static_table() -> dict:
    path = REPORTS / "gpu_static.json"
    if not path.exists():
        return {}
    return {row["name"]: row for row in json.loads(path.read_text())["kernels"]}


def model(suites=None) -> list[dict]:
    import fastconv.cuda as fc
    from fastconv.dispatch import auto_algorithm, capable

    static = static_table()
    rows = []
    for suite, layer, family, spec in workload_calls(suites):
        algo = auto_algorithm(family, "cuda", spec, capable(family, "cuda", spec))
        launches = fc.launches(family, algo, spec)
        kernels = []
        for launch in launches:
            cost = conv_launch_cost if family in ("conv", "conv_transpose") else pool_launch_cost
            flops, nbytes = cost(spec, launch)
            occ = static.get(launch.kernel.name, {}).get("sm_90")
            waves = None
            if occ:
                waves = launch.blocks / (SMS * max(occ["blocks_per_sm"], 1))
            fill = min(1.0, launch.blocks / SMS)
            kernels.append(dict(
                kernel=launch.kernel.name, what=launch.what, grid=launch.blocks, block=launch.threads,
                shared=launch.kernel.shared_bytes, flops=flops, bytes=nbytes, fill=fill,
                time_s=roofline(flops, nbytes, spec.dtype, fill),
                occupancy=None if not occ else occ["occupancy"], waves=waves,
            ))
        flops = spec.flops
        min_bytes = spec.min_bytes
        moved = sum(k["bytes"] for k in kernels)
        rows.append(dict(
            suite=suite, layer=layer, spec=spec.name(), algo=algo, flops=flops, min_bytes=min_bytes,
            moved_bytes=moved, ai_min=flops / max(min_bytes, 1), ai_moved=flops / max(moved, 1),
            roofline_min_s=roofline(flops, min_bytes, spec.dtype),
            roofline_s=sum(k["time_s"] for k in kernels),
            bound="compute" if flops / (PEAK_FP32) > min_bytes / HBM_BW else "memory",
            kernels=kernels,
        ))
    return rows


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f}"


def write(rows) -> None:
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "gpu_model.json").write_text(json.dumps(dict(source=SOURCE, layers=rows), indent=1))
    ridge = PEAK_FP32 / HBM_BW
    lines = [
        "# GPU performance MODEL (H100 SXM) -- not a measurement",
        "",
        "Generated by `python tools/gpu_model.py`. Every number below is computed from the layer's "
        "spec and a roofline; no GPU was used and none of these times was measured.",
        "",
        f"- Peak figures: {SOURCE}. Ridge point {ridge:.1f} FLOP/B (FP32).",
        "- FLOPs: 2 per multiply-add, plus the bias adds (ConvSpec.flops); pooling: one per tap.",
        "- min MB: the compulsory traffic (read input + weights, write output). kernel MB: the traffic "
        "of fastconv's kernel sequence for the `auto` algorithm (padded working copy, packed weights, "
        "im2col columns, ...), each kernel reading its inputs once from DRAM (L2 reuse inside a kernel "
        "assumed perfect, none across kernels).",
        "- roofline us: sum over the layer's kernels of max(FLOPs / peak, bytes / bandwidth), the peaks "
        "scaled by the kernel's grid fill min(1, blocks / 132); min roofline: the compulsory traffic "
        "in one kernel on the whole GPU. Launch latency is not modelled.",
        "- Launches: kernel, grid blocks x threads per block, static shared memory; occupancy and waves "
        "(grid / (132 SMs x resident blocks per SM)) from reports/gpu_static.json when present.",
        "",
    ]
    suites = []
    for r in rows:
        if r["suite"] not in suites:
            suites.append(r["suite"])
    for suite in suites:
        part = [r for r in rows if r["suite"] == suite]
        total = sum(r["roofline_s"] for r in part)
        total_min = sum(r["roofline_min_s"] for r in part)
        lines += [f"## {suite}", "",
                  f"Modelled total: {_us(total)} us with fastconv's kernel sequence, "
                  f"{_us(total_min)} us at the compulsory-traffic roofline.", "",
                  "| layer | algo | GFLOP | min MB | kernel MB | AI min | AI kernels | bound | "
                  "min roofline us | roofline us | launches |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in part:
            launches = "<br>".join(
                f"{k['what']}: `{k['kernel']}` {k['grid']}x{k['block']}, {k['shared']} B"
                + (f", occ {100 * k['occupancy']:.0f}%, {k['waves']:.2f} waves" if k["occupancy"] is not None else "")
                for k in r["kernels"])
            lines.append(
                f"| {r['layer']} | {r['algo']} | {r['flops'] / 1e9:.3f} | {r['min_bytes'] / 1e6:.2f} | "
                f"{r['moved_bytes'] / 1e6:.2f} | {r['ai_min']:.1f} | {r['ai_moved']:.1f} | {r['bound']} | "
                f"{_us(r['roofline_min_s'])} | {_us(r['roofline_s'])} | {launches} |")
        lines.append("")
    (REPORTS / "gpu_model.md").write_text("\n".join(lines))


def main() -> int:
    rows = model()
    write(rows)
    print(f"wrote {REPORTS / 'gpu_model.md'}: {len(rows)} layer calls (a MODEL, not measurements)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
