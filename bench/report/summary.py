"""Aggregates over derived entries: per-suite and per-role geometric means, and
depthwise-separable layers paired with the standard convolutions they replace."""

from __future__ import annotations

import math
import re
from collections import defaultdict

from .derive import div


def geomean(values) -> float | None:
    vals = [v for v in values if v is not None and v > 0]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else None


def summary(entries) -> list[dict]:
    """Per (suite, layout): geometric-mean ratios and the sum of layer times (a network pass)."""
    groups = defaultdict(list)
    for e in entries:
        groups[(e["suite"], e["layout"])].append(e)
    out = []
    for (suite, layout), es in groups.items():
        both = [e for e in es if e["ratio"] is not None]
        out.append({
            "suite": suite, "layout": layout, "layers": len(es), "compared": len(both),
            "geomean_ratio": geomean(e["ratio"] for e in both),
            "geomean_ratio_best": geomean(e["ratio_best"] for e in both),
            "min_ratio": min((e["ratio"] for e in both), default=None),
            "max_ratio": max((e["ratio"] for e in both), default=None),
            "sum_fastconv_s": sum(e["t_fastconv"] for e in both) if both else None,
            "sum_torch_s": sum(e["t_torch"] for e in both) if both else None,
            "faster": sum(1 for e in both if e["ratio"] < 1),
            "median_pct_bound": _median([e["pct_bound"] for e in es if e["pct_bound"] is not None]),
        })
        out[-1]["sum_ratio"] = div(out[-1]["sum_fastconv_s"], out[-1]["sum_torch_s"])
    return out


def by_role(entries) -> list[dict]:
    groups = defaultdict(list)
    for e in entries:
        if e["ratio"] is not None:
            groups[(e["suite"], e["role"] or e["kind"], e["layout"])].append(e)
    return [{"suite": s, "role": r, "layout": lay, "n": len(es), "geomean_ratio": geomean(e["ratio"] for e in es),
             "sum_ratio": div(sum(e["t_fastconv"] for e in es), sum(e["t_torch"] for e in es))}
            for (s, r, lay), es in groups.items()]


def _median(values):
    vals = sorted(values)
    if not vals:
        return None
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


def dw_pairs(entries) -> list[dict]:
    """Standard k x k conv against its depthwise-separable replacement, same suite and layout.

    The standard conv's canonical name is the depthwise part's with ``g1`` and the
    separable op's output channels; the separable op's own parts name the depthwise and
    pointwise layers timed alone, when the suite has them.
    """
    index = defaultdict(dict)
    for e in entries:
        index[(e["suite"], e["layout"])].setdefault(e["name"], e)
    pairs = []
    for e in entries:
        if e["kind"] != "separable" or not e.get("parts"):
            continue
        dw_name, pw_name = e["parts"]
        m = re.search(r"_g(\d+)ic(\d+)oc(\d+)_", dw_name)
        if not m:
            continue
        std_name = dw_name[:m.start()] + f"_g1ic{m.group(2)}oc{e['out_channels']}_" + dw_name[m.end():]
        same = index[(e["suite"], e["layout"])]
        std = same.get(std_name)
        if std is None:
            continue
        dw, pw = same.get(dw_name), same.get(pw_name)
        pair = {"suite": e["suite"], "layout": e["layout"], "std": std, "sep": e, "dw": dw, "pw": pw,
                "label": f"C{e['in_channels']}->{e['out_channels']} {'x'.join(map(str, e['in_size']))}"
                         f" mb{e['batch']}",
                "flop_saving": div(std["flops"], e["flops"]),
                "fastconv_saving": div(std["t_fastconv"], e["t_fastconv"]),
                "torch_saving": div(std["t_torch"], e["t_torch"]),
                "sep_ratio": e["ratio"], "std_ratio": std["ratio"]}
        if dw and pw:
            pair["fastconv_parts_s"] = _sum_or_none(dw["t_fastconv"], pw["t_fastconv"])
            pair["torch_parts_s"] = _sum_or_none(dw["t_torch"], pw["t_torch"])
        pairs.append(pair)
    return pairs


def _sum_or_none(*values):
    return sum(values) if all(v is not None for v in values) else None
