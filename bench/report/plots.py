"""The report's PNGs: roofline, depthwise-separable against standard, per-layer ratios."""

from __future__ import annotations

from pathlib import Path

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
