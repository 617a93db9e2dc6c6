"""The performance targets fastconv is held to (issue 10), and whether a run meets them.

Every measured value is computed from the run's entries; the goals are the issue's. The
main run is the process mode (each library in its own process, its own defaults); ratios
are fastconv / PyTorch in the same layout, geometric means over layers. Companion
runs (``bench.run --also inprocess,busy,backward,training``) give the rest:

- *inprocess*: fastconv with PyTorch imported and used in its process, against
  fastconv's own time in the main run (same layers, what ``algo="auto"`` runs);
- *busy*: both libraries, each in its own process, while a third process keeps one core
  busy, on ResNet-50's 3x3 layers and MobileNetV2's depthwise layers.
- *backward* (issue 12): each conv layer's backward pass (grad input and grad weight) of
  the resnet50, mobilenet_v2, dw_vs_standard and dilated suites, each library in its own
  process, against PyTorch's ``aten.convolution_backward``, and against fastconv's own
  forward time of the same layer in the main run.
- *training* (issue 13): one training step of ResNet-18 and MobileNetV2 converted by
  ``fastconv.torch.convert`` against the same model on PyTorch's kernels, each library in
  its own process (``bench/training.py``).

The spread column is the same ratio taken from the quartiles instead of the medians
(fastconv's lower quartile over PyTorch's upper one, and the other way round): how far
the measured value could move within each side's interquartile range.
"""

from __future__ import annotations

from .cells import md_table
from .derive import div, layer_key
from .summary import geomean

SUITE_GOAL = 1.0
OVERALL_GOAL = 0.8
INPROCESS_GOAL = 1.10
BUSY_GOAL = 1.25
BACKWARD_SUITE_GOAL = 1.0
BACKWARD_DEPTHWISE_GOAL = 0.5
BACKWARD_OVER_FORWARD_GOAL = 2.2


def _quartile_ratios(pairs):
    """(low, high) geometric means of quartile ratios over (fastconv info, other info) pairs."""
    lo = geomean(div(a.get("q1_s"), b.get("q3_s")) for a, b in pairs)
    hi = geomean(div(a.get("q3_s"), b.get("q1_s")) for a, b in pairs)
    return lo, hi


def _used(e):
    """fastconv's timing info for what the user gets (auto, else the best algorithm)."""
    return e["fastconv"].get(e["fastconv_algo"]) or {}


def _suite_rows(entries):
    rows, means = [], []
    for suite in sorted({e["suite"] for e in entries}):
        for layout in sorted({e["layout"] for e in entries if e["suite"] == suite}):
            es = [e for e in entries if e["suite"] == suite and e["layout"] == layout and e["ratio"] is not None]
            if not es:
                continue
            value = geomean(e["ratio"] for e in es)
            means.append(value)
            rows.append([f"{suite}: fastconv / PyTorch", layout, value,
                         _quartile_ratios([(_used(e), e["torch"]) for e in es]), len(es), SUITE_GOAL, "at most"])
    if means:
        rows.append(["every suite and layout: geomean of the rows above", "both", geomean(means), (None, None),
                     len(means), OVERALL_GOAL, "at most"])
    return rows


def _match(entries, others):
    index = {layer_key(e): e for e in others}
    return [(e, index[layer_key(e)]) for e in entries if layer_key(e) in index]


def _inprocess_rows(entries, inprocess):
    rows = []
    for layout in sorted({e["layout"] for e in inprocess}):
        pairs = [(alone, shared) for alone, shared in _match(entries, inprocess)
                 if alone["layout"] == layout and alone["t_fastconv"] and shared["t_fastconv"]]
        if not pairs:
            continue
        value = geomean(div(shared["t_fastconv"], alone["t_fastconv"]) for alone, shared in pairs)
        spread = _quartile_ratios([(_used(shared), _used(alone)) for alone, shared in pairs])
        rows.append(["fastconv with PyTorch imported and used in its process / fastconv alone", layout, value, spread,
                     len(pairs), INPROCESS_GOAL, "at most"])
    return rows


def _busy_rows(busy):
    rows = []
    for label, select in (("ResNet-50 3x3 layers", lambda e: e["suite"] == "resnet50" and e["role"] == "standard"
                           and list(e["kernel"] or []) == [3, 3]),
                          ("MobileNetV2 depthwise layers", lambda e: e["suite"] == "mobilenet_v2"
                           and e["role"] == "depthwise")):
        for layout in sorted({e["layout"] for e in busy}):
            es = [e for e in busy if e["layout"] == layout and e["ratio"] is not None and select(e)]
            if es:
                rows.append([f"one core busy: {label}, fastconv / PyTorch", layout, geomean(e["ratio"] for e in es),
                             _quartile_ratios([(_used(e), e["torch"]) for e in es]), len(es), BUSY_GOAL,
                             "at most"])
    return rows


def _backward_rows(entries, backward):
    rows = []
    for suite in sorted({e["suite"] for e in backward}):
        for layout in sorted({e["layout"] for e in backward if e["suite"] == suite}):
            es = [e for e in backward if e["suite"] == suite and e["layout"] == layout and e["ratio"] is not None]
            if es:
                rows.append([f"backward, {suite}: fastconv / PyTorch", layout, geomean(e["ratio"] for e in es),
                             _quartile_ratios([(_used(e), e["torch"]) for e in es]), len(es), BACKWARD_SUITE_GOAL,
                             "at most"])
    for layout in sorted({e["layout"] for e in backward}):
        es = [e for e in backward if e["layout"] == layout and e["role"] == "depthwise" and e["ratio"] is not None]
        if es:
            rows.append(["backward, depthwise layers: fastconv / PyTorch", layout, geomean(e["ratio"] for e in es),
                         _quartile_ratios([(_used(e), e["torch"]) for e in es]), len(es),
                         BACKWARD_DEPTHWISE_GOAL, "at most"])
        pairs = [(forward, back) for back, forward in _match([e for e in backward if e["layout"] == layout], entries)
                 if forward["t_fastconv"] and back["t_fastconv"]]
        if pairs:
            worst = max(div(back["t_fastconv"], forward["t_fastconv"]) for forward, back in pairs)
            rows.append(["backward / fastconv's own forward, the worst layer", layout, worst, (None, None),
                         len(pairs), BACKWARD_OVER_FORWARD_GOAL, "at most"])
    return rows


def target_rows(doc, entries, companions=None) -> list[list]:
    """[target, layout, measured, (spread low, high), layers, goal, sense] for every target covered."""
    from .derive import derive

    companions = companions or {}
    rows = _suite_rows(entries)
    if "inprocess" in companions:
        rows += _inprocess_rows(entries, derive(companions["inprocess"]))
    if "busy" in companions:
        rows += _busy_rows(derive(companions["busy"]))
    if "backward" in companions:
        rows += _backward_rows(entries, derive(companions["backward"]))
    if "training" in companions:
        from .training import training_target_rows

        rows += training_target_rows(companions["training"])
    startup = doc.get("startup") or {}
    for key, label, goal in (("import_s", "`import fastconv`, s", 0.5),
                             ("first_call_cached_s", "first call, kernels in Numba's cache, s", 0.5),
                             ("first_call_cold_s", "first call, empty cache (compiles its kernels), s", 10.0)):
        if key in startup:
            rows.append([label, "—", startup[key], (None, None), startup.get("processes", 1), goal, "at most"])
    return rows


def targets_table(doc, entries, companions=None) -> list[str]:
    rows = []
    for target, layout, value, (lo, hi), n, goal, sense in target_rows(doc, entries, companions):
        if value is None:
            met = "—"
        else:
            met = "**met**" if (value <= goal if sense == "at most" else value >= goal) else "missed"
        shown = "—" if value is None else f"{value:.2f}"
        spread = f"{lo:.2f}–{hi:.2f}" if lo is not None and hi is not None else ""
        rows.append([target, layout, shown, spread, n, f"{sense} {goal:g}", met])
    return md_table(["target", "layout", "measured", "spread (quartiles)", "layers / runs", "goal", ""], rows)
