"""Result JSON -> one entry per (suite, layer, problem, layout): times, rates, roofline, ratios.

Times are medians of the recorded samples' statistics; GFLOP/s and GB/s divide the
problem's FLOPs and minimum bytes (from the library's specs) by the median; the roofline
bound is ``min(peak, bandwidth * intensity)`` with the peak and bandwidth measured in the
same run; a ratio is fastconv's median over PyTorch's in the same layout.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path


def load(paths) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in paths]


def ceilings(doc: dict) -> dict:
    m = doc.get("machine", {}).get("measured", {})
    return {"peak_gflops": m.get("peak_gflops"), "bandwidth_gbs": m.get("bandwidth_gbs"),
            "dram_bandwidth_gbs": m.get("dram_bandwidth_gbs")}


def derive(doc: dict) -> list[dict]:
    """Entries with times, rates, roofline bound and ratios, computed from ``doc``."""
    ceil = ceilings(doc)
    rows = defaultdict(list)
    for r in doc.get("results", []):
        rows[(r["suite"], r["layer"], r["name"], r["layout"])].append(r)
    entries = []
    for p in doc.get("problems", []):
        for layout, facts in p.get("layouts", {}).items():
            group = rows.get((p["suite"], p["layer"], p["name"], layout), [])
            if not group:
                continue
            e = {k: p.get(k) for k in ("suite", "index", "layer", "name", "op", "kind", "role", "flops",
                                       "min_bytes", "intensity", "batch", "in_channels", "out_channels",
                                       "in_size", "out_size", "kernel", "stride", "parts")}
            e["layout"] = layout
            e["auto_label"] = facts.get("auto_label")
            e["torch_note"] = facts.get("torch_note") or facts.get("torch_unsupported") or ""
            e["fastconv"], e["torch"] = {}, None
            for r in group:
                info = {"median_s": r["stats"].get("median_s"), "iqr_s": r["stats"].get("iqr_s"),
                        "q1_s": r["stats"].get("q1_s"), "q3_s": r["stats"].get("q3_s"),
                        "n": r["stats"].get("n", 0), "first_call_s": r.get("first_call_s"),
                        "error": r.get("error")}
                if r["library"] == "torch":
                    e["torch"] = info
                else:
                    info["jit"] = r.get("jit") or {}
                    info["check"] = r.get("check")
                    e["fastconv"][r["algo"]] = info
            alias = facts.get("auto_alias")
            e["auto_algo"] = alias if alias in e["fastconv"] else ("auto" if "auto" in e["fastconv"] else None)
            timed = {a: v["median_s"] for a, v in e["fastconv"].items() if v.get("median_s")}
            e["t_auto"] = timed.get(e["auto_algo"]) if e["auto_algo"] else None
            e["best_algo"] = min(timed, key=timed.get) if timed else None
            e["t_best"] = timed.get(e["best_algo"]) if timed else None
            e["t_torch"] = (e["torch"] or {}).get("median_s")
            # the time a user gets: algo="auto" when it was timed, else the best one timed
            e["t_fastconv"] = e["t_auto"] if e["t_auto"] is not None else e["t_best"]
            e["fastconv_algo"] = e["auto_algo"] if e["t_auto"] is not None else e["best_algo"]
            e["ratio"] = div(e["t_fastconv"], e["t_torch"])
            e["ratio_best"] = div(e["t_best"], e["t_torch"])
            e["auto_over_best"] = div(e["t_auto"], e["t_best"])
            e.update(roof(e["flops"], e["min_bytes"], e["t_fastconv"], ceil))
            torch_roof = roof(e["flops"], e["min_bytes"], e["t_torch"], ceil)
            e["torch_gflops"], e["torch_pct_bound"] = torch_roof["gflops"], torch_roof["pct_bound"]
            e["checks_failed"] = [a for a, v in e["fastconv"].items()
                                  if v.get("check") is not None and not v["check"].get("ok", True)]
            e["errors"] = {a: v["error"] for a, v in e["fastconv"].items() if v.get("error")}
            if e["torch"] and e["torch"].get("error"):
                e["errors"]["torch"] = e["torch"]["error"]
            entries.append(e)
    return entries


def layer_key(e) -> tuple:
    """What names one layer across runs and passes: a suite may hold the same layer name at
    two batch sizes (dw_vs_standard), told apart by the problem string, which the backward
    pass prefixes with "backward_"."""
    return (e["suite"], e["layer"], e["name"].removeprefix("backward_"), e["layout"])


def div(a, b):
    return a / b if a is not None and b else None


def roof(flops, nbytes, t, ceil) -> dict:
    """GFLOP/s, GB/s, the bound (compute or memory) and the share of it achieved."""
    peak, bw = ceil.get("peak_gflops"), ceil.get("bandwidth_gbs")
    out = {"gflops": None, "gbs": None, "bound": None, "attainable_gflops": None, "pct_bound": None}
    if not t:
        return out
    out["gflops"] = flops / t / 1e9
    out["gbs"] = nbytes / t / 1e9
    if peak and bw and flops:
        intensity = flops / max(nbytes, 1)
        memory_roof = bw * intensity
        out["bound"] = "memory" if memory_roof < peak else "compute"
        out["attainable_gflops"] = min(peak, memory_roof)
        out["pct_bound"] = 100.0 * out["gflops"] / out["attainable_gflops"]
    return out
