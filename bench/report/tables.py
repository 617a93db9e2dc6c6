"""The report's per-layer tables: every layer, every algorithm against ``auto``, first calls."""

from __future__ import annotations

from .cells import fmt_ms, fmt_num, fmt_pct, fmt_ratio, md_table
from .derive import layer_key


def per_layer_table(entries) -> list[str]:
    L = []
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
            rows.append([e["layer"], f"`{e['name']}`", e["layout"], fmt_num(e["flops"] / 1e9, 3),
                         fmt_num(e["intensity"], 1), algo,
                         f"{fmt_ms(e['t_fastconv'])} ± {fmt_ms(fc.get('iqr_s'))}", fmt_num(e["gflops"], 1),
                         fmt_num(e["gbs"], 1), f"{fmt_pct(e['pct_bound'])} {(e['bound'] or '')[:3]}",
                         f"{fmt_ms(e['t_torch'])} ± {fmt_ms(tq.get('iqr_s'))}", fmt_num(e["torch_gflops"], 1),
                         f"**{fmt_ratio(e['ratio'])}**", f"{e['best_algo'] or '—'} {fmt_ratio(e['ratio_best'])}",
                         _flags(e)])
        L += md_table(["layer", "problem", "layout", "GFLOP", "FLOP/B", "fastconv algo", "fastconv ms ± IQR",
                     "GFLOP/s", "GB/s", "% of roof", "PyTorch ms ± IQR", "PyTorch GFLOP/s", "ratio",
                     "best (ratio)", "notes"], rows)
    return L


def forward_backward_table(entries, backward) -> list[str]:
    """Each layer's forward (main run) beside its backward pass (the backward companion run)."""
    if not backward:
        return []
    forward = {layer_key(e): e for e in entries}
    L = ["", "## Forward and backward", "",
         "The backward pass is grad input plus grad weight of the same layer and data (PyTorch: "
         "`aten.convolution_backward`); each library in its own process. Times are medians ± IQR.", ""]
    rows = []
    for b in backward:
        f = forward.get(layer_key(b), {})
        fb = b["fastconv"].get(b["fastconv_algo"] or "", {})
        rows.append([f"{b['suite']}:{b['layer']}", b.get("role") or "", b["layout"], fmt_ms(f.get("t_fastconv")),
                     f"{fmt_ms(b['t_fastconv'])} ± {fmt_ms(fb.get('iqr_s'))}",
                     fmt_ratio(b["t_fastconv"] / f["t_fastconv"]) if f.get("t_fastconv") and b["t_fastconv"] else "—",
                     fmt_ms(f.get("t_torch")), f"{fmt_ms(b['t_torch'])} ± {fmt_ms((b['torch'] or {}).get('iqr_s'))}",
                     fmt_ratio(f.get("ratio")), f"**{fmt_ratio(b['ratio'])}**", _flags({**b, "torch_note": ""})])
    return L + md_table(["layer", "role", "layout", "fastconv forward ms", "fastconv backward ms ± IQR",
                         "fastconv backward / forward", "PyTorch forward ms", "PyTorch backward ms ± IQR",
                         "forward ratio", "backward ratio", "notes"], rows)


def algorithms_table(entries) -> list[str]:
    L = []
    L.append("")
    L.append("## Algorithms, and what `auto` picks")
    L.append("")
    algos = sorted({a for e in entries for a in e["fastconv"]})
    rows = []
    for e in entries:
        cells = [fmt_ms(e["fastconv"][a]["median_s"]) if a in e["fastconv"] else "" for a in algos]
        rows.append([f"{e['suite']}:{e['layer']}", e["layout"], *cells, e["auto_label"] or "—",
                     e["best_algo"] or "—", fmt_ratio(e["auto_over_best"])])
    L += md_table(["layer", "layout", *[f"{a} ms" for a in algos], "auto runs", "best", "auto / best"], rows)
    L.append("")
    return L


def first_calls_table(entries) -> list[str]:
    """First calls that compiled or loaded kernels, then those furthest above the steady median."""
    L = []
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
        rows.append([f"{e['suite']}:{e['layer']}", e["layout"], a, f"{t:.3f}", fmt_num(jit.get("compile_s"), 3),
                     jit.get("compiled", 0), jit.get("cache_loaded", 0), fmt_ms(steady),
                     f"{overhead((t, e, a, jit)):.3f}", ", ".join(jit.get("kernels", [])[:4])])
    L += md_table(["layer", "layout", "algo", "first call s", "compile s", "compiled", "from cache",
                 "steady ms", "first − steady s", "kernels"], rows)
    torch_first = [(e["torch"]["first_call_s"], e) for e in entries if e["torch"] and e["torch"].get("first_call_s")]
    if torch_first:
        t, e = max(torch_first, key=lambda x: x[0])
        L.append("")
        L.append(f"PyTorch's slowest first call: {t:.3f} s ({e['suite']}:{e['layer']} {e['layout']}).")
    L.append("")
    return L


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
