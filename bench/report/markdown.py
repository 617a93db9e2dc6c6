"""The Markdown report: its sections in order, from derived entries and the run's document.

The per-layer tables are in :mod:`.tables`; every cell is formatted by :mod:`.cells`.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from .cells import fmt_bytes, fmt_ms, fmt_num, fmt_pct, fmt_ratio, md_table
from .compare import format_comparison
from .summary import by_role, geomean, summary
from .tables import algorithms_table, first_calls_table, forward_backward_table, per_layer_table
from .targets import targets_table


def mode_text(settings: dict) -> str:
    """How the libraries were run, in words."""
    if settings.get("mode", "inprocess") == "process":
        text = "each library in its own process with its own default environment, alternating over rounds"
    else:
        text = "both libraries in one process (in-process mode), interleaved"
    if settings.get("busy_core"):
        text += ", one core kept busy by another process"
    threads = settings.get("threads")
    return text + (f", {threads} threads set for both" if threads else "")


def render_markdown(doc, entries, pairs, plots, sources=None, companions=None) -> str:
    L = _intro(doc, entries, pairs, sources)
    L += _targets(doc, entries, companions)
    if companions and "training" in companions:
        from .training import training_section

        L += training_section(companions["training"])
    L += _machine(doc)
    L += _summary(entries, plots)
    L += _dw_vs_standard(pairs, plots)
    L += _roofline(plots)
    L += per_layer_table(entries)
    if companions and "backward" in companions:
        from .derive import derive

        L += forward_backward_table(entries, derive(companions["backward"]))
    L += algorithms_table(entries)
    L += first_calls_table(entries)
    L += _problems_met(doc, entries)
    L += _regression(doc)
    return "\n".join(L) + "\n"


def _intro(doc, entries, pairs, sources) -> list[str]:
    s = doc.get("settings", {})
    git = doc.get("machine", {}).get("git", {})
    L = []
    L.append(f"# fastconv benchmark: {', '.join(s.get('suites', []))}")
    L.append("")
    src = ", ".join(f"`{p}`" for p in sources) if sources else "the result JSON"
    several = sources is not None and len(sources) > 1
    L.append(f"Built by `python -m bench.report` from {src}; every number below is computed from "
             f"{'those files' if several else 'that file'} (rebuild without re-running).")
    L.append(f"Run {doc.get('created', '?')}: `{' '.join(doc.get('command', []))}` — commit "
             f"`{(git.get('commit') or '?')[:12]}`{' with uncommitted changes' if git.get('dirty') else ''}; "
             f"{'quick' if s.get('quick') else 'full'} budgets; {mode_text(s)}; {s.get('dtype')}; "
             f"{doc.get('duration_s', 0):.0f} s"
             f"{'' if doc.get('finished', True) else ' (UNFINISHED: the run stopped early)'}.")
    if doc.get("merged_from"):
        L.append("")
        L.append("Merged from separate runs; each run's rows are put against the peak and bandwidth measured "
                 "in that run (the Machine section and the roofline's lines show the first run's):")
        L.append("")
        L += md_table(["suites", "run", "commit", "load average", "peak GFLOP/s", "bandwidth GB/s"],
                    [[", ".join(m["suites"] or []), m["created"], (m["commit"] or "?")[:12],
                      fmt_num(m["load_avg"]), fmt_num(m["peak_gflops"], 1), fmt_num(m["bandwidth_gbs"], 1)]
                     for m in doc["merged_from"]])
    L.append("")
    L += _headline(entries, pairs)
    L.append("")
    L.append("Ratios are fastconv time / PyTorch time in the same layout (below 1: fastconv is "
             "faster). *fastconv* means what `algo=\"auto\"` runs; *best* is the fastest algorithm timed. "
             "Times are medians in milliseconds; IQR is the interquartile range.")
    L.append("")
    return L


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


def _targets(doc, entries, companions) -> list[str]:
    from .targets import __doc__ as about

    L = ["## Targets", "", about.split("\n\n", 1)[1].strip(), ""]
    for name, comp in (companions or {}).items():
        cs = comp.get("settings", {})
        L.append(f"- companion run *{name}*: {comp.get('created', '?')}, {mode_text(cs)}, "
                 f"{_covers(comp)}, load average at start "
                 f"{(comp.get('machine', {}).get('load_avg') or ['?'])[0]}")
    if companions:
        L.append("")
    return L + targets_table(doc, entries, companions) + [""]


def _covers(comp) -> str:
    if "training" in comp:
        models = comp.get("settings", {}).get("models", [])
        return f"a training step of {', '.join(models)}, batch {comp.get('settings', {}).get('batch')}"
    return f"{len(comp.get('problems', []))} layers"


def _machine(doc) -> list[str]:
    s = doc.get("settings", {})
    mach = doc.get("machine", {})
    meas = mach.get("measured", {})
    L = []
    L.append("## Machine")
    L.append("")
    cpu = mach.get("cpu", {})
    v = mach.get("versions", {})
    L.append(f"- CPU: {cpu.get('model')}, {cpu.get('physical_cores')} cores / {cpu.get('logical_cores')} "
             f"logical (affinity {cpu.get('affinity')}); caches "
             + ", ".join(f"{k} {fmt_bytes(b)}" for k, b in (cpu.get("caches") or {}).items()))
    onednn = mach.get("torch_build", {}).get("onednn") or ""
    L.append(f"- Versions: Python {mach.get('python')}, "
             + ", ".join(f"{k} {val}" for k, val in v.items() if val) + (f"; PyTorch's {onednn}" if onednn else ""))
    if meas:
        L.append(f"- Measured FP32 peak: **{meas['peak_gflops']:.1f} GFLOP/s** ({meas['peak_source']}); "
                 + ", ".join(f"{k} {g['gflops']:.1f}" for k, g in meas.get("gemm", {}).items()))
        bw = meas.get("bandwidth", {})
        L.append(f"- Measured bandwidth (STREAM triad): **{meas['bandwidth_gbs']:.1f} GB/s** at the input pool's "
                 f"footprint ({fmt_bytes(bw.get('pool', {}).get('footprint_bytes'))}), "
                 f"{meas.get('dram_bandwidth_gbs', 0):.1f} GB/s from DRAM "
                 f"({fmt_bytes(bw.get('dram', {}).get('footprint_bytes'))}); ridge point "
                 f"{meas['ridge_flop_per_byte']:.1f} FLOP/byte")
    env = doc.get("environment", {})
    workers = env.get("workers")
    if workers:
        for lib, w in workers.items():
            setting = (f"Numba {w.get('numba')}, {w.get('runtime')}, {w.get('num_threads')} threads"
                       if lib == "fastconv" else
                       f"{w.get('num_threads')} intra-op / {w.get('num_interop_threads')} inter-op threads, "
                       f"grad mode {'on' if w.get('grad_enabled') else 'off'}")
            envs = ", ".join(f"`{k}={v}`" for k, v in (w.get("env") or {}).items()) or "none of the recorded variables"
            L.append(f"- {lib} process: {setting}; environment: {envs}")
    else:
        numba = mach.get("numba", {})
        L.append(f"- Threads: {s.get('threads')} (Numba {numba.get('num_threads')}, threading layer "
                 f"{numba.get('threading_layer')}; PyTorch {mach.get('torch_build', {}).get('num_threads')}); "
                 f"OMP_WAIT_POLICY {env.get('omp_wait_policy')}")
    changed = env.get("changed") or {}
    if changed:
        L.append("- Environment changed for the run: " + ", ".join(
            f"`{k}` {c.get('was')!r} → {c.get('now')!r}" for k, c in changed.items()))
    load0, load1 = mach.get("load_avg"), doc.get("load_avg_end")
    if load0:
        from ..machine import is_busy

        cpus = (doc.get("machine", {}).get("cpu") or {}).get("affinity") or s.get("threads") or 1
        busy = is_busy(load0[0], cpus)
        L.append(f"- Load average at start {load0[0]:.2f}" + (f", at end {load1[0]:.2f}" if load1 else "")
                 + (" — **the machine was busy: other processes shared the cores; treat times with care**"
                    if busy else ""))
    b = s.get("budget", {})
    L.append(f"- Timing: first call apart; warm-up {b.get('warmup_s')} s, measurement {b.get('measure_s')} s per "
             f"candidate ({b.get('min_reps')}–{b.get('max_reps')} calls in {b.get('rounds')} "
             f"{'rounds alternating between the processes' if s.get('mode') == 'process' else 'interleaved rounds'}); "
             f"inputs cycled through {fmt_bytes(s.get('pool_bytes'))} of buffers per layout")
    L.append("")
    return L


def _summary(entries, plots) -> list[str]:
    L = []
    L.append("## Summary by suite")
    L.append("")
    rows = []
    for r in sorted(summary(entries), key=lambda r: (r["suite"], r["layout"])):
        rows.append([r["suite"], r["layout"], f"{r['compared']}/{r['layers']}", fmt_ratio(r["geomean_ratio"]),
                     fmt_ratio(r["geomean_ratio_best"]),
                     f"{fmt_ratio(r['min_ratio'])}–{fmt_ratio(r['max_ratio'])}" if r["compared"] else "—",
                     f"{r['faster']}", fmt_ms(r["sum_fastconv_s"]), fmt_ms(r["sum_torch_s"]), fmt_ratio(r["sum_ratio"]),
                     fmt_pct(r["median_pct_bound"])])
    L += md_table(["suite", "layout", "layers", "geomean ratio", "geomean best", "range", "fastconv faster",
                 "Σ fastconv ms", "Σ PyTorch ms", "Σ ratio", "median % of roof"], rows)
    L.append("")
    L.append("By layer role:")
    L.append("")
    rows = [[r["suite"], r["role"], r["layout"], r["n"], fmt_ratio(r["geomean_ratio"]), fmt_ratio(r["sum_ratio"])]
            for r in sorted(by_role(entries), key=lambda r: (r["suite"], r["role"], r["layout"]))]
    L += md_table(["suite", "role", "layout", "layers", "geomean ratio", "Σ ratio"], rows)
    L.append("")
    if plots.get("ratios"):
        L.append(f"![fastconv / PyTorch per layer]({Path(plots['ratios']).name})")
        L.append("")
    return L


def _dw_vs_standard(pairs, plots) -> list[str]:
    L = []
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
            rows.append([p["label"], p["layout"], fmt_num(p["flop_saving"], 1),
                         fmt_ms(p["std"]["t_fastconv"]), fmt_ms(p["sep"]["t_fastconv"]),
                         fmt_ms(p.get("fastconv_parts_s")),
                         f"**{fmt_num(p['fastconv_saving'])}**",
                         fmt_ms(p["std"]["t_torch"]), fmt_ms(p["sep"]["t_torch"]), fmt_ms(p.get("torch_parts_s")),
                         f"**{fmt_num(p['torch_saving'])}**", fmt_ratio(p["sep_ratio"]), fmt_ratio(p["std_ratio"])])
        L += md_table(["feature map", "layout", "FLOP saving", "fastconv std ms", "fastconv sep ms",
                     "fastconv dw+pw ms", "fastconv time saving", "PyTorch std ms", "PyTorch sep ms",
                     "PyTorch dw+pw ms", "PyTorch time saving", "sep ratio", "std ratio"], rows)
        L.append("")
        if plots.get("dw"):
            L.append(f"![FLOP saving against time saving]({Path(plots['dw']).name})")
            L.append("")
    return L


def _roofline(plots) -> list[str]:
    L = []
    if plots.get("roofline"):
        L.append("## Roofline")
        L.append("")
        L.append("Achieved GFLOP/s against arithmetic intensity (FLOPs over the minimum bytes any algorithm "
                 "must move, from the library's specs), under the measured peak and bandwidth; filled: "
                 "fastconv, hollow: PyTorch.")
        L.append("")
        L.append(f"![roofline]({Path(plots['roofline']).name})")
        L.append("")
    return L


def _problems_met(doc, entries) -> list[str]:
    L = []
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
    return L


def _regression(doc) -> list[str]:
    L = []
    comp = doc.get("comparison")
    if comp:
        L.append("## Regression check")
        L.append("")
        L.append("```")
        L.append(format_comparison(comp))
        L.append("```")
        L.append("")
    return L
