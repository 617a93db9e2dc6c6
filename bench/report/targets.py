"""The performance targets fastconv is held to (issue 5), and whether a run meets them.

Every measured value is computed from the run's entries; the goals are the issue's.
Ratios are fastconv / PyTorch in the same layout (geometric means over layers unless
said otherwise); startup times come from ``bench/startup.py`` (fresh processes).
"""

from __future__ import annotations

from .cells import md_table
from .derive import div
from .summary import geomean


def _ratios(entries, layout, suite=None, roles=None, min_batch=None, max_batch=None):
    return [e["ratio"] for e in entries
            if e["ratio"] is not None and e["layout"] == layout
            and (suite is None or e["suite"] == suite)
            and (roles is None or e["role"] in roles)
            and (min_batch is None or (e["batch"] or 0) >= min_batch)
            and (max_batch is None or (e["batch"] or 0) <= max_batch)]


def _geomean_row(label, entries, layout, goal, **select):
    values = _ratios(entries, layout, **select)
    return [label, layout, geomean(values), len(values), goal, "at most"]


def _sum_ratio_row(label, entries, layout, suite, goal):
    es = [e for e in entries if e["suite"] == suite and e["layout"] == layout and e["ratio"] is not None]
    value = div(sum(e["t_fastconv"] for e in es), sum(e["t_torch"] for e in es)) if es else None
    return [label, layout, value, len(es), goal, "at most"]


def _peak_share_row(entries, layout, peak):
    """Median share of the measured sgemm peak over ResNet-50's 3x3 convolutions."""
    shares = sorted(e["gflops"] / peak for e in entries
                    if peak and e["suite"] == "resnet50" and e["layout"] == layout and e["role"] == "standard"
                    and list(e["kernel"] or []) == [3, 3] and e["gflops"])
    median = shares[len(shares) // 2] if shares else None
    return ["resnet50 3x3 layers: median share of the measured sgemm peak", layout, median, len(shares),
            0.75, "at least"]


def _separable_row(pairs, layout):
    """separable_conv2d against PyTorch's depthwise then pointwise layers, timed alone."""
    values = [div(p["sep"]["t_fastconv"], p.get("torch_parts_s")) for p in pairs if p["layout"] == layout]
    values = [v for v in values if v]
    return ["dw_vs_standard: separable_conv2d / PyTorch depthwise + pointwise", layout, geomean(values),
            len(values), 0.8, "at most"]


def target_rows(doc, entries, pairs, peak) -> list[list]:
    """[target, layout, measured, layers, goal, sense] for every target the run covers."""
    builders = [
        lambda lay: _geomean_row("resnet50 convolutions (3x3, 1x1, 7x7 s2)", entries, lay, 1.10,
                                 suite="resnet50", roles={"standard", "pointwise"}),
        lambda lay: _peak_share_row(entries, lay, peak),
        lambda lay: _geomean_row("depthwise layers, batch 1 (mobilenet_v2)", entries, lay, 0.67,
                                 suite="mobilenet_v2", roles={"depthwise"}, max_batch=1),
        lambda lay: _geomean_row("depthwise layers, batch 8 and more (every suite)", entries, lay, 1.0,
                                 roles={"depthwise"}, min_batch=8),
        lambda lay: _sum_ratio_row("mobilenet_v2 whole network (sum of layer times)", entries, lay,
                                   "mobilenet_v2", 1.0),
        lambda lay: _separable_row(pairs, lay),
    ]
    for suite, goal in (("dilated", 1.25), ("transposed", 1.10), ("sequence_1d", 1.25),
                        ("video_3d", 1.25), ("pooling", 0.8), ("batched", 1.10)):
        builders.append(lambda lay, suite=suite, goal=goal: _geomean_row(suite, entries, lay, goal, suite=suite))
    layouts = sorted({e["layout"] for e in entries})
    rows = [build(layout) for build in builders for layout in layouts]
    startup = doc.get("startup") or {}
    for key, label, goal in (("import_s", "`import fastconv`, s", 0.5),
                             ("first_call_cached_s", "first call, kernels in Numba's cache, s", 0.5),
                             ("first_call_cold_s", "first call, empty cache (compiles its kernels), s", 10.0)):
        if key in startup:
            rows.append([label, "—", startup[key], startup.get("processes", 1), goal, "at most"])
    return [r for r in rows if r[3]]


def targets_table(doc, entries, pairs, peak) -> list[str]:
    rows = []
    for target, layout, value, n, goal, sense in target_rows(doc, entries, pairs, peak):
        if value is None:
            met = "—"
        else:
            met = "**met**" if (value <= goal if sense == "at most" else value >= goal) else "missed"
        shown = "—" if value is None else f"{value:.2f}"
        rows.append([target, layout, shown, n, f"{sense} {goal:g}", met])
    return md_table(["target", "layout", "measured", "layers / runs", "goal", ""], rows)
