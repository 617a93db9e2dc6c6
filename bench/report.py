"""Markdown report and PNG plots, rebuilt from saved result JSON without re-running.

    python -m bench.report bench/results/latest.json --out reports/
    python -m bench.report a.json b.json --out reports/ --name full      # merged
    python -m bench.report new.json --compare old.json --margin 0.15     # exit 1 on regressions

Every number in the report is computed here from the JSON (:func:`derive`): times are
medians of the recorded samples' statistics, GFLOP/s and GB/s divide the problem's
FLOPs and minimum bytes (from the library's specs) by the median, the roofline bound
is ``min(peak, bandwidth * intensity)`` with the peak and bandwidth measured by
``bench.machine`` in the same run, and a ratio is fastconv's median over PyTorch's in
the same layout (below 1: fastconv is faster).

Files written for ``--name NAME`` (default: the first JSON's file stem):

- ``NAME.md``: the report
- ``NAME-roofline.png``: achieved GFLOP/s against arithmetic intensity, both libraries
- ``NAME-dw-vs-standard.png``: FLOP saving against time saving of depthwise-separable
  replacements of standard convolutions (when the run has such pairs)
- ``NAME-ratios.png``: fastconv/PyTorch per layer, one panel per suite
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import defaultdict
from pathlib import Path

# ---------------------------------------------------------------------------------------
# Derivation: JSON -> one entry per (suite, layer, problem, layout)
# ---------------------------------------------------------------------------------------


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
            e["ratio"] = _div(e["t_fastconv"], e["t_torch"])
            e["ratio_best"] = _div(e["t_best"], e["t_torch"])
            e["auto_over_best"] = _div(e["t_auto"], e["t_best"])
            e.update(_roof(e["flops"], e["min_bytes"], e["t_fastconv"], ceil))
            torch_roof = _roof(e["flops"], e["min_bytes"], e["t_torch"], ceil)
            e["torch_gflops"], e["torch_pct_bound"] = torch_roof["gflops"], torch_roof["pct_bound"]
            e["checks_failed"] = [a for a, v in e["fastconv"].items()
                                  if v.get("check") is not None and not v["check"].get("ok", True)]
            e["errors"] = {a: v["error"] for a, v in e["fastconv"].items() if v.get("error")}
            if e["torch"] and e["torch"].get("error"):
                e["errors"]["torch"] = e["torch"]["error"]
            entries.append(e)
    return entries


def _div(a, b):
    return a / b if a is not None and b else None


def _roof(flops, nbytes, t, ceil) -> dict:
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
        out[-1]["sum_ratio"] = _div(out[-1]["sum_fastconv_s"], out[-1]["sum_torch_s"])
    return out


def by_role(entries) -> list[dict]:
    groups = defaultdict(list)
    for e in entries:
        if e["ratio"] is not None:
            groups[(e["suite"], e["role"] or e["kind"], e["layout"])].append(e)
    return [{"suite": s, "role": r, "layout": lay, "n": len(es), "geomean_ratio": geomean(e["ratio"] for e in es),
             "sum_ratio": _div(sum(e["t_fastconv"] for e in es), sum(e["t_torch"] for e in es))}
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
                "flop_saving": _div(std["flops"], e["flops"]),
                "fastconv_saving": _div(std["t_fastconv"], e["t_fastconv"]),
                "torch_saving": _div(std["t_torch"], e["t_torch"]),
                "sep_ratio": e["ratio"], "std_ratio": std["ratio"]}
        if dw and pw:
            pair["fastconv_parts_s"] = _sum_or_none(dw["t_fastconv"], pw["t_fastconv"])
            pair["torch_parts_s"] = _sum_or_none(dw["t_torch"], pw["t_torch"])
        pairs.append(pair)
    return pairs


def _sum_or_none(*values):
    return sum(values) if all(v is not None for v in values) else None


# ---------------------------------------------------------------------------------------
# Console lines and regression comparison
# ---------------------------------------------------------------------------------------


def summarize_problem(doc, suite, layer, name) -> list[str]:
    """One line per layout for the run's console, from the partial document."""
    lines = []
    key = (suite, layer, name)
    sub = {**doc, "problems": [p for p in doc["problems"] if (p["suite"], p["layer"], p["name"]) == key]}
    for e in derive(sub):
        fc = f"{_ms(e['t_fastconv'])} ms ({e['fastconv_algo']})" if e["t_fastconv"] else "n/a"
        torch = f"{_ms(e['t_torch'])} ms" if e["t_torch"] else "n/a"
        ratio = f"ratio {e['ratio']:.2f}" if e["ratio"] is not None else ""
        flags = " CHECK FAILED: " + ",".join(e["checks_failed"]) if e["checks_failed"] else ""
        if e["errors"]:
            flags += " ERRORS: " + "; ".join(f"{k}: {v}" for k, v in e["errors"].items())
        lines.append(f"{suite}:{layer} [{e['layout']}] fastconv {fc}, PyTorch {torch} {ratio}"
                     f" {_num(e['gflops'], 1)} GFLOP/s{flags}")
    return lines


def compare(old: dict, new: dict, margin: float) -> dict:
    """Rows whose fastconv/PyTorch ratio grew by more than ``margin`` (ratios, not times).

    Keys are (suite, layer, problem, layout, algorithm), with the algorithm ``auto``
    standing for what ``algo="auto"`` ran, so a change of the auto choice shows too.
    """
    def ratios(doc):
        out = {}
        for e in derive(doc):
            if not e["t_torch"]:
                continue
            base = (e["suite"], e["layer"], e["name"], e["layout"])
            for algo, v in e["fastconv"].items():
                if v.get("median_s"):
                    out[(*base, algo)] = v["median_s"] / e["t_torch"]
            if e["t_auto"] is not None:
                out[(*base, "auto")] = e["t_auto"] / e["t_torch"]
        return out

    a, b = ratios(old), ratios(new)
    flagged, improved = [], []
    for key in sorted(set(a) & set(b)):
        change = b[key] / a[key] - 1.0
        item = {"suite": key[0], "layer": key[1], "name": key[2], "layout": key[3], "algo": key[4],
                "old_ratio": a[key], "new_ratio": b[key], "change": change}
        if change > margin:
            flagged.append(item)
        elif b[key] < a[key] / (1.0 + margin):
            improved.append(item)
    return {"margin": margin, "compared": len(set(a) & set(b)), "flagged": flagged, "improved": improved,
            "only_old": len(set(a) - set(b)), "only_new": len(set(b) - set(a))}


def format_comparison(c: dict) -> str:
    lines = [f"compared {c['compared']} rows (fastconv/PyTorch ratios) against {c.get('against', 'the old run')}; "
             f"margin {c['margin']:.0%}: {len(c['flagged'])} worse, {len(c['improved'])} better"
             + (f", {c['only_old']} only in the old run, {c['only_new']} only in the new" if c["only_old"] or
                c["only_new"] else "")]
    for item in c["flagged"]:
        lines.append(f"  WORSE  {item['suite']}:{item['layer']} [{item['layout']}] {item['algo']}: "
                     f"{item['old_ratio']:.3f} -> {item['new_ratio']:.3f} ({item['change']:+.0%})  {item['name']}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------------------


def _ms(t):
    if t is None:
        return "—"
    ms = t * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _num(v, digits=2):
    return "—" if v is None else f"{v:.{digits}f}"


def _ratio(v):
    return "—" if v is None else f"{v:.2f}"


def _pct(v):
    return "—" if v is None else f"{v:.0f}%"


def _table(header, rows) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


# ---------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------

ROLE_COLORS = {"standard": "tab:blue", "pointwise": "tab:green", "depthwise": "tab:orange",
               "separable": "tab:red", "grouped": "tab:olive", "transposed": "tab:purple"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_roofline(entries, ceil: dict, path: Path, title: str) -> Path | None:
    pts = [e for e in entries if e["gflops"]]
    if not pts or not ceil.get("peak_gflops") or not ceil.get("bandwidth_gbs"):
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 6))
    xs = [e["intensity"] for e in pts]
    lo, hi = min(xs) / 2, max(max(xs) * 2, ceil["peak_gflops"] / ceil["bandwidth_gbs"] * 4)
    grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    peak, bw = ceil["peak_gflops"], ceil["bandwidth_gbs"]
    ax.plot(grid, [min(peak, bw * x) for x in grid], color="black", lw=2,
            label=f"roof: {peak:.0f} GFLOP/s, {bw:.1f} GB/s (measured)")
    if ceil.get("dram_bandwidth_gbs"):
        d = ceil["dram_bandwidth_gbs"]
        ax.plot(grid, [min(peak, d * x) for x in grid], color="gray", lw=1, ls="--",
                label=f"DRAM triad {d:.1f} GB/s")
    seen = set()
    for e in pts:
        role = e["role"] or e["kind"]
        role = "pooling" if "pool" in (role or "") else role
        color = ROLE_COLORS.get(role, "tab:brown" if role == "pooling" else "tab:gray")
        marker = "o" if e["layout"] == "nchw" else "s"
        label = f"fastconv {role}" if ("f", role) not in seen else None
        seen.add(("f", role))
        ax.scatter(e["intensity"], e["gflops"], color=color, marker=marker, s=28, label=label, zorder=3)
        if e["torch_gflops"]:
            label = "PyTorch (hollow)" if "t" not in seen else None
            seen.add("t")
            ax.scatter(e["intensity"], e["torch_gflops"], facecolors="none", edgecolors=color, marker=marker,
                       s=28, label=label, zorder=2, lw=0.8)
    ax.scatter([], [], color="black", marker="o", label="NCHW")
    ax.scatter([], [], color="black", marker="s", label="channels-last")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / minimum byte)")
    ax.set_ylabel("achieved GFLOP/s")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plain_ticks(ax):
    from matplotlib.ticker import FormatStrFormatter

    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FormatStrFormatter("%g"))
        axis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.tick_params(which="minor", labelsize=7)


def plot_dw_vs_standard(pairs, path: Path, title: str) -> Path | None:
    """Left: time saving against FLOP saving. Right: the same per feature map, as bars."""
    pts = [p for p in pairs if p["flop_saving"]]
    if not pts:
        return None
    plt = _plt()
    series = [("fastconv", "nchw", "tab:red", "o"), ("fastconv", "nhwc", "salmon", "s"),
              ("torch", "nchw", "tab:blue", "o"), ("torch", "nhwc", "lightskyblue", "s")]
    labels = list(dict.fromkeys(p["label"] for p in pts))
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(14, 1.5 + max(5.0, 0.45 * len(labels))),
                                 gridspec_kw={"width_ratios": [1, 1.1]})
    values = [p["flop_saving"] for p in pts]
    for lib, layout, color, marker in series:
        sel = [p for p in pts if p["layout"] == layout and p[f"{lib}_saving"]]
        if not sel:
            continue
        name = "fastconv" if lib == "fastconv" else "PyTorch"
        ys = [p[f"{lib}_saving"] for p in sel]
        values += ys
        ax.scatter([p["flop_saving"] for p in sel], ys, color=color, marker=marker, s=36,
                   label=f"{name} {layout}", zorder=3, edgecolors="black", linewidths=0.4)
    lo, hi = min(min(values), 1.0) / 1.4, max(values) * 1.4
    ax.plot([lo, hi], [lo, hi], color="black", lw=1, label="time saving = FLOP saving")
    ax.axhline(1.0, color="gray", ls="--", lw=1, label="no time saved")
    for a in (ax,):
        a.set_xscale("log")
        a.set_yscale("log")
    ax.set_xlim(min(p["flop_saving"] for p in pts) / 1.4, max(p["flop_saving"] for p in pts) * 1.4)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("FLOP saving: FLOPs(standard) / FLOPs(separable)")
    ax.set_ylabel("time saving: time(standard) / time(separable)")
    _plain_ticks(ax)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("each point: one feature map, library and layout", fontsize=9)
    # bars per feature map
    height = 0.8 / len(series)
    for k, (lib, layout, color, _) in enumerate(series):
        vals = {p["label"]: p[f"{lib}_saving"] for p in pts if p["layout"] == layout}
        ys = [i + (k - (len(series) - 1) / 2) * height for i in range(len(labels))]
        name = "fastconv" if lib == "fastconv" else "PyTorch"
        bx.barh(ys, [vals.get(lab) or 0 for lab in labels], height=height, color=color, label=f"{name} {layout}")
    flop = {p["label"]: p["flop_saving"] for p in pts}
    bx.scatter([flop[lab] for lab in labels], range(len(labels)), marker="|", s=400, color="black",
               label="FLOP saving", zorder=4)
    bx.axvline(1.0, color="gray", ls="--", lw=1)
    bx.set_yticks(range(len(labels)))
    bx.set_yticklabels(labels, fontsize=8)
    bx.invert_yaxis()
    bx.set_xscale("log")
    bx.set_xlabel("time saving (bars) against FLOP saving (black tick)")
    bx.grid(True, axis="x", which="both", alpha=0.3)
    bx.legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_ratios(entries, path: Path, title: str) -> Path | None:
    suites = list(dict.fromkeys(e["suite"] for e in entries if e["ratio"] is not None))
    if not suites:
        return None
    plt = _plt()
    counts = [len({(e["layer"], e["name"]) for e in entries if e["suite"] == s}) for s in suites]
    fig, axes = plt.subplots(len(suites), 1, figsize=(10, 1.2 + 0.22 * sum(counts) + 0.8 * len(suites)),
                             squeeze=False, gridspec_kw={"height_ratios": [max(c, 1) for c in counts]})
    for ax, suite in zip(axes[:, 0], suites):
        es = [e for e in entries if e["suite"] == suite]
        layers = list(dict.fromkeys((e["index"], e["layer"], e["name"]) for e in es))
        for k, (layout, color) in enumerate((("nchw", "tab:red"), ("nhwc", "tab:blue"))):
            vals = {(e["index"], e["layer"], e["name"]): e["ratio"] for e in es if e["layout"] == layout}
            ys = [i + (k - 0.5) * 0.38 for i in range(len(layers))]
            ax.barh(ys, [vals.get(key) or 0 for key in layers], height=0.38, color=color, label=layout)
        ax.axvline(1.0, color="black", lw=1)
        ax.set_yticks(range(len(layers)))
        ax.set_yticklabels([f"{layer} (mb{n.split('_mb')[1].split('_')[0]})" if "_mb" in n else layer
                            for _, layer, n in layers], fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("log")
        _plain_ticks(ax)
        ax.set_title(f"{suite}: fastconv time / PyTorch time (left of 1: fastconv faster)", fontsize=9)
        ax.grid(True, axis="x", which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------
# The Markdown report
# ---------------------------------------------------------------------------------------


def merge(docs: list[dict]) -> dict:
    if len(docs) == 1:
        return docs[0]
    out = dict(docs[0])
    out["problems"] = [p for d in docs for p in d.get("problems", [])]
    out["results"] = [r for d in docs for r in d.get("results", [])]
    out["skipped"] = [s for d in docs for s in d.get("skipped", [])]
    out["merged_from"] = [{"created": d.get("created"), "command": d.get("command"),
                           "suites": d.get("settings", {}).get("suites"),
                           "machine": d.get("machine", {}).get("cpu", {}).get("model"),
                           "commit": d.get("machine", {}).get("git", {}).get("commit"),
                           "load_avg": (d.get("machine", {}).get("load_avg") or [None])[0],
                           **ceilings(d)} for d in docs]
    out["duration_s"] = sum(d.get("duration_s", 0.0) for d in docs)
    out["finished"] = all(d.get("finished", True) for d in docs)
    out["settings"] = {**docs[0].get("settings", {}),
                       "suites": [s for d in docs for s in d.get("settings", {}).get("suites", [])]}
    return out


def build_report(docs: list[dict], outdir, stem: str = "report", sources=None) -> list[Path]:
    """Write NAME.md and the PNGs into ``outdir``; return the paths written."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    entries = []
    for d in docs:  # each run's rows against its own machine's ceilings
        entries += derive(d)
    doc = merge(docs)
    ceil = ceilings(doc)
    pairs = dw_pairs(entries)
    written = []
    suites = doc.get("settings", {}).get("suites", [])
    title = f"fastconv vs PyTorch — {', '.join(suites) if len(suites) <= 3 else f'{len(suites)} suites'}"
    roof = plot_roofline(entries, ceil, outdir / f"{stem}-roofline.png", "Roofline: " + title)
    dwp = plot_dw_vs_standard(pairs, outdir / f"{stem}-dw-vs-standard.png",
                              "Depthwise-separable vs standard conv: does the FLOP saving become time?")
    rat = plot_ratios(entries, outdir / f"{stem}-ratios.png", title)
    md = render_markdown(doc, entries, pairs, {"roofline": roof, "dw": dwp, "ratios": rat}, sources)
    path = outdir / f"{stem}.md"
    path.write_text(md)
    written.append(path)
    written += [p for p in (roof, dwp, rat) if p is not None]
    return written


def render_markdown(doc, entries, pairs, plots, sources=None) -> str:
    s = doc.get("settings", {})
    mach = doc.get("machine", {})
    meas = mach.get("measured", {})
    git = mach.get("git", {})
    L = []
    L.append(f"# fastconv benchmark: {', '.join(s.get('suites', []))}")
    L.append("")
    src = ", ".join(f"`{p}`" for p in sources) if sources else "the result JSON"
    several = sources is not None and len(sources) > 1
    L.append(f"Built by `python -m bench.report` from {src}; every number below is computed from "
             f"{'those files' if several else 'that file'} (rebuild without re-running).")
    L.append(f"Run {doc.get('created', '?')}: `{' '.join(doc.get('command', []))}` — commit "
             f"`{(git.get('commit') or '?')[:12]}`{' with uncommitted changes' if git.get('dirty') else ''}; "
             f"{'quick' if s.get('quick') else 'full'} budgets; {s.get('threads')} threads; {s.get('dtype')}; "
             f"{doc.get('duration_s', 0):.0f} s"
             f"{'' if doc.get('finished', True) else ' (UNFINISHED: the run stopped early)'}.")
    if doc.get("merged_from"):
        L.append("")
        L.append("Merged from separate runs; each run's rows are put against the peak and bandwidth measured "
                 "in that run (the Machine section and the roofline's lines show the first run's):")
        L.append("")
        L += _table(["suites", "run", "commit", "load average", "peak GFLOP/s", "bandwidth GB/s"],
                    [[", ".join(m["suites"] or []), m["created"], (m["commit"] or "?")[:12],
                      _num(m["load_avg"]), _num(m["peak_gflops"], 1), _num(m["bandwidth_gbs"], 1)]
                     for m in doc["merged_from"]])
    L.append("")
    L += _headline(entries, pairs)
    L.append("")
    L.append("Ratios are fastconv time / PyTorch time in the same layout and process (below 1: fastconv is "
             "faster). *fastconv* means what `algo=\"auto\"` runs; *best* is the fastest algorithm timed. "
             "Times are medians in milliseconds; IQR is the interquartile range.")
    L.append("")

    # ---- machine
    L.append("## Machine")
    L.append("")
    cpu = mach.get("cpu", {})
    v = mach.get("versions", {})
    L.append(f"- CPU: {cpu.get('model')}, {cpu.get('physical_cores')} cores / {cpu.get('logical_cores')} "
             f"logical (affinity {cpu.get('affinity')}); caches "
             + ", ".join(f"{k} {_bytes(b)}" for k, b in (cpu.get("caches") or {}).items()))
    onednn = mach.get("torch_build", {}).get("onednn") or ""
    L.append(f"- Versions: Python {mach.get('python')}, "
             + ", ".join(f"{k} {val}" for k, val in v.items() if val) + (f"; PyTorch's {onednn}" if onednn else ""))
    if meas:
        L.append(f"- Measured FP32 peak: **{meas['peak_gflops']:.1f} GFLOP/s** ({meas['peak_source']}); "
                 + ", ".join(f"{k} {g['gflops']:.1f}" for k, g in meas.get("gemm", {}).items()))
        bw = meas.get("bandwidth", {})
        L.append(f"- Measured bandwidth (STREAM triad): **{meas['bandwidth_gbs']:.1f} GB/s** at the input pool's "
                 f"footprint ({_bytes(bw.get('pool', {}).get('footprint_bytes'))}), "
                 f"{meas.get('dram_bandwidth_gbs', 0):.1f} GB/s from DRAM "
                 f"({_bytes(bw.get('dram', {}).get('footprint_bytes'))}); ridge point "
                 f"{meas['ridge_flop_per_byte']:.1f} FLOP/byte")
    numba = mach.get("numba", {})
    env = doc.get("environment", {})
    L.append(f"- Threads: {s.get('threads')} (Numba {numba.get('num_threads')}, threading layer "
             f"{numba.get('threading_layer')}; PyTorch {mach.get('torch_build', {}).get('num_threads')}); "
             f"OMP_WAIT_POLICY {env.get('omp_wait_policy')}")
    changed = env.get("changed") or {}
    if changed:
        L.append("- Environment changed for the run: " + ", ".join(
            f"`{k}` {c.get('was')!r} → {c.get('now')!r}" for k, c in changed.items()))
    load0, load1 = mach.get("load_avg"), doc.get("load_avg_end")
    if load0:
        from .run import BUSY_LOAD

        busy = load0[0] > BUSY_LOAD * (s.get("threads") or 1)
        L.append(f"- Load average at start {load0[0]:.2f}" + (f", at end {load1[0]:.2f}" if load1 else "")
                 + (" — **the machine was busy: other processes shared the cores; treat times with care**"
                    if busy else ""))
    b = s.get("budget", {})
    L.append(f"- Timing: first call apart; warm-up {b.get('warmup_s')} s, measurement {b.get('measure_s')} s per "
             f"candidate ({b.get('min_reps')}–{b.get('max_reps')} calls in {b.get('rounds')} interleaved rounds); "
             f"inputs cycled through {_bytes(s.get('pool_bytes'))} of buffers per layout")
    L.append("")

    # ---- summary
    L.append("## Summary by suite")
    L.append("")
    rows = []
    for r in sorted(summary(entries), key=lambda r: (r["suite"], r["layout"])):
        rows.append([r["suite"], r["layout"], f"{r['compared']}/{r['layers']}", _ratio(r["geomean_ratio"]),
                     _ratio(r["geomean_ratio_best"]),
                     f"{_ratio(r['min_ratio'])}–{_ratio(r['max_ratio'])}" if r["compared"] else "—",
                     f"{r['faster']}", _ms(r["sum_fastconv_s"]), _ms(r["sum_torch_s"]), _ratio(r["sum_ratio"]),
                     _pct(r["median_pct_bound"])])
    L += _table(["suite", "layout", "layers", "geomean ratio", "geomean best", "range", "fastconv faster",
                 "Σ fastconv ms", "Σ PyTorch ms", "Σ ratio", "median % of roof"], rows)
    L.append("")
    L.append("By layer role:")
    L.append("")
    rows = [[r["suite"], r["role"], r["layout"], r["n"], _ratio(r["geomean_ratio"]), _ratio(r["sum_ratio"])]
            for r in sorted(by_role(entries), key=lambda r: (r["suite"], r["role"], r["layout"]))]
    L += _table(["suite", "role", "layout", "layers", "geomean ratio", "Σ ratio"], rows)
    L.append("")
    if plots.get("ratios"):
        L.append(f"![fastconv / PyTorch per layer]({Path(plots['ratios']).name})")
        L.append("")

    # ---- dw vs standard
    if pairs:
        L.append("## Depthwise-separable against standard 3x3 convolution")
        L.append("")
        L.append("*FLOP saving* = FLOPs(standard) / FLOPs(separable); *time saving* = time(standard) / "
                 "time(separable) on the same library and layout. A time saving below the FLOP saving is "
                 "FLOP saving lost; below 1, the separable form is slower outright. *dw+pw* sums the two "
                 "layers timed alone.")
        L.append("")
        rows = []
        for p in pairs:
            rows.append([p["label"], p["layout"], _num(p["flop_saving"], 1),
                         _ms(p["std"]["t_fastconv"]), _ms(p["sep"]["t_fastconv"]), _ms(p.get("fastconv_parts_s")),
                         f"**{_num(p['fastconv_saving'])}**",
                         _ms(p["std"]["t_torch"]), _ms(p["sep"]["t_torch"]), _ms(p.get("torch_parts_s")),
                         f"**{_num(p['torch_saving'])}**", _ratio(p["sep_ratio"]), _ratio(p["std_ratio"])])
        L += _table(["feature map", "layout", "FLOP saving", "fastconv std ms", "fastconv sep ms",
                     "fastconv dw+pw ms", "fastconv time saving", "PyTorch std ms", "PyTorch sep ms",
                     "PyTorch dw+pw ms", "PyTorch time saving", "sep ratio", "std ratio"], rows)
        L.append("")
        if plots.get("dw"):
            L.append(f"![FLOP saving against time saving]({Path(plots['dw']).name})")
            L.append("")

    # ---- roofline
    if plots.get("roofline"):
        L.append("## Roofline")
        L.append("")
        L.append("Achieved GFLOP/s against arithmetic intensity (FLOPs over the minimum bytes any algorithm "
                 "must move, from the library's specs), under the measured peak and bandwidth; filled: "
                 "fastconv, hollow: PyTorch.")
        L.append("")
        L.append(f"![roofline]({Path(plots['roofline']).name})")
        L.append("")

    # ---- per layer
    L.append("## Per layer")
    for suite in dict.fromkeys(e["suite"] for e in entries):
        es = [e for e in entries if e["suite"] == suite]
        L.append("")
        L.append(f"### {suite}")
        L.append("")
        rows = []
        for e in es:
            fc = e["fastconv"].get(e["fastconv_algo"] or "", {})
            tq = e["torch"] or {}
            algo = e["fastconv_algo"] or "—"
            if algo == "auto" and e["auto_label"]:
                algo = f"auto ({e['auto_label']})"
            rows.append([e["layer"], f"`{e['name']}`", e["layout"], _num(e["flops"] / 1e9, 3),
                         _num(e["intensity"], 1), algo,
                         f"{_ms(e['t_fastconv'])} ± {_ms(fc.get('iqr_s'))}", _num(e["gflops"], 1),
                         _num(e["gbs"], 1), f"{_pct(e['pct_bound'])} {(e['bound'] or '')[:3]}",
                         f"{_ms(e['t_torch'])} ± {_ms(tq.get('iqr_s'))}", _num(e["torch_gflops"], 1),
                         f"**{_ratio(e['ratio'])}**", f"{e['best_algo'] or '—'} {_ratio(e['ratio_best'])}",
                         _flags(e)])
        L += _table(["layer", "problem", "layout", "GFLOP", "FLOP/B", "fastconv algo", "fastconv ms ± IQR",
                     "GFLOP/s", "GB/s", "% of roof", "PyTorch ms ± IQR", "PyTorch GFLOP/s", "ratio",
                     "best (ratio)", "notes"], rows)

    # ---- algorithms and auto
    L.append("")
    L.append("## Algorithms, and what `auto` picks")
    L.append("")
    algos = sorted({a for e in entries for a in e["fastconv"]})
    rows = []
    for e in entries:
        cells = [_ms(e["fastconv"][a]["median_s"]) if a in e["fastconv"] else "" for a in algos]
        rows.append([f"{e['suite']}:{e['layer']}", e["layout"], *cells, e["auto_label"] or "—",
                     e["best_algo"] or "—", _ratio(e["auto_over_best"])])
    L += _table(["layer", "layout", *[f"{a} ms" for a in algos], "auto runs", "best", "auto / best"], rows)
    L.append("")

    # ---- JIT
    L.append("## First calls (JIT compilation), reported apart")
    L.append("")
    firsts = []
    for e in entries:
        for a, v in e["fastconv"].items():
            jit = v.get("jit") or {}
            if v.get("first_call_s") is not None:
                firsts.append((v["first_call_s"], e, a, jit))
    active = [f for f in firsts if f[3].get("compiled") or f[3].get("cache_loaded")]
    total_compile = sum(f[3].get("compile_s", 0.0) for f in firsts)
    n_compiled = sum(f[3].get("compiled", 0) for f in firsts)
    n_loaded = sum(f[3].get("cache_loaded", 0) for f in firsts)
    L.append(f"{len(firsts)} fastconv first calls: {n_compiled} kernel specialisations compiled and {n_loaded} "
             f"loaded from Numba's cache, {total_compile:.2f} s in `Dispatcher.compile` in all. The first calls "
             "that compiled or loaded kernels, then those whose first call exceeded the steady median the most:")
    L.append("")

    def overhead(f):
        steady = f[1]["fastconv"][f[2]].get("median_s")
        return f[0] - steady if steady is not None else f[0]

    rest = sorted((f for f in firsts if f not in active), key=lambda f: -overhead(f))[:5]
    rows = []
    for t, e, a, jit in sorted(active, key=lambda f: -f[3].get("compile_s", 0.0)) + rest:
        steady = e["fastconv"][a].get("median_s")
        rows.append([f"{e['suite']}:{e['layer']}", e["layout"], a, f"{t:.3f}", _num(jit.get("compile_s"), 3),
                     jit.get("compiled", 0), jit.get("cache_loaded", 0), _ms(steady),
                     f"{overhead((t, e, a, jit)):.3f}", ", ".join(jit.get("kernels", [])[:4])])
    L += _table(["layer", "layout", "algo", "first call s", "compile s", "compiled", "from cache",
                 "steady ms", "first − steady s", "kernels"], rows)
    torch_first = [(e["torch"]["first_call_s"], e) for e in entries if e["torch"] and e["torch"].get("first_call_s")]
    if torch_first:
        t, e = max(torch_first, key=lambda x: x[0])
        L.append("")
        L.append(f"PyTorch's slowest first call: {t:.3f} s ({e['suite']}:{e['layer']} {e['layout']}).")
    L.append("")

    # ---- problems
    bad = [(e, a) for e in entries for a in e["checks_failed"]]
    errs = [(e, k, msg) for e in entries for k, msg in e["errors"].items()]
    skipped = doc.get("skipped", [])
    if bad or errs or skipped:
        L.append("## Problems met")
        L.append("")
        for e, a in bad:
            c = e["fastconv"][a]["check"]
            why = c.get("error") or f"relative error {c.get('rel_err', float('nan')):.2e} > {c.get('tol')}"
            L.append(f"- result check failed: {e['suite']}:{e['layer']} [{e['layout']}] {a}: {why}")
        for e, k, msg in errs:
            L.append(f"- error: {e['suite']}:{e['layer']} [{e['layout']}] {k}: {msg}")
        for sk in skipped:
            L.append(f"- skipped: {sk['suite']}:{sk['layer']} `{sk['name']}`: {sk['reason']}")
        L.append("")
    comp = doc.get("comparison")
    if comp:
        L.append("## Regression check")
        L.append("")
        L.append("```")
        L.append(format_comparison(comp))
        L.append("```")
        L.append("")
    return "\n".join(L) + "\n"


def _headline(entries, pairs) -> list[str]:
    """Per suite: the geometric mean of the per-layer ratios and the ratio of summed times."""
    out = ["**Headline** — fastconv / PyTorch, geometric mean over layers (ratio of summed layer times):", ""]
    by_suite = defaultdict(dict)
    for r in summary(entries):
        if r["geomean_ratio"] is not None:
            by_suite[r["suite"]][r["layout"]] = f"{r['geomean_ratio']:.2f} ({r['sum_ratio']:.2f})"
    if not by_suite:
        return ["**Headline** — no layer has both a fastconv and a PyTorch time."]
    for suite, cells in by_suite.items():
        out.append(f"- {suite}: " + ", ".join(f"{layout} {text}" for layout, text in sorted(cells.items())))
    sel = [p for p in pairs if p["fastconv_saving"] and p["torch_saving"]]
    if sel:
        out.append("")
        out.append(f"Depthwise-separable replacements of standard convolutions save "
                   f"{geomean(p['flop_saving'] for p in sel):.1f}x the FLOPs (geometric mean over {len(sel)} feature "
                   f"maps and layouts) and {geomean(p['fastconv_saving'] for p in sel):.2f}x the time on fastconv, "
                   f"{geomean(p['torch_saving'] for p in sel):.2f}x on PyTorch.")
    return out


NOISY_IQR = 0.2  # a row whose IQR exceeds this share of its median is marked noisy


def _flags(e) -> str:
    notes = []
    for who, info, t in (("fastconv", e["fastconv"].get(e["fastconv_algo"] or ""), e["t_fastconv"]),
                         ("PyTorch", e["torch"], e["t_torch"])):
        if info and t and info.get("iqr_s") is not None and info["iqr_s"] > NOISY_IQR * t:
            notes.append(f"noisy {who} (IQR {100 * info['iqr_s'] / t:.0f}% of median)")
    if e["checks_failed"]:
        notes.append("CHECK FAILED: " + ",".join(e["checks_failed"]))
    if e["errors"]:
        notes.append("error: " + ",".join(e["errors"]))
    if e["torch_note"]:
        notes.append("PyTorch: " + e["torch_note"])
    return "; ".join(notes)


def _bytes(n) -> str:
    if not n:
        return "—"
    for unit, size in (("GB", 1024 ** 3), ("MB", 1024 ** 2), ("KB", 1024)):
        if n >= size:
            return f"{n / size:.0f} {unit}" if n / size >= 10 else f"{n / size:.1f} {unit}"
    return f"{n} B"


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", type=Path, help="result JSON file(s) from bench.run")
    p.add_argument("--out", type=Path, default=Path("reports"), help="output directory (default %(default)s)")
    p.add_argument("--name", help="file stem of the report and plots (default: the first JSON's stem)")
    p.add_argument("--compare", type=Path, metavar="OLD.json", help="flag ratios worse than in OLD.json; exit 1")
    p.add_argument("--margin", type=float, default=0.15)
    args = p.parse_args(argv)
    docs = load(args.results)
    status = 0
    if args.compare:
        new = merge(docs)
        comparison = compare(json.loads(args.compare.read_text()), new, args.margin)
        comparison["against"] = str(args.compare)
        print(format_comparison(comparison))
        status = 1 if comparison["flagged"] else 0
        if len(docs) == 1:
            docs = [{**docs[0], "comparison": comparison}]
    for path in build_report(docs, args.out, args.name or args.results[0].stem, sources=args.results):
        print(f"wrote {path}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
