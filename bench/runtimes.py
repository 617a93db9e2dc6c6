"""Which thread runtime fastconv runs on, measured: ``python -m bench.runtimes``.

Each configuration is a fresh process with one environment (fastconv's default, TBB;
Numba's OpenMP layer with libgomp's default spinning; OpenMP with the passive wait policy
fastconv used to set; Numba's workqueue) and runs five real layers in each scenario:

- **alone**: a warm loop per layer;
- **torch used**: PyTorch imported first, and one PyTorch 3x3 conv (its own threads, its
  defaults) between every two fastconv calls: the worst case of a model mixing both,
  since PyTorch's OpenMP workers spin for a while after each of its calls;
- **busy core**: another process keeps one core busy for the whole loop;
- **fork**: a child made by ``fork`` after the parent ran every layer runs them again
  (the child's exit status, its thread count, and whether its results equal the
  parent's; on OpenMP fastconv's fork guard runs the child on one thread, where Numba
  alone would kill it);
- **threads**: four Python threads launch the layers at once (whether the process
  survives and the results are right).

PyTorch's own times for the same layers, alone and with a core busy, are measured the
same way in processes of its own. Times are medians of a 0.3 s loop in milliseconds.
The JSON goes to ``--out`` and a Markdown table to ``--report`` (a file).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CONFIGS = {
    "tbb (fastconv's default)": {},
    "omp, libgomp's default spin": {"NUMBA_THREADING_LAYER": "omp"},
    "omp, OMP_WAIT_POLICY=PASSIVE (fastconv before)": {"NUMBA_THREADING_LAYER": "omp", "OMP_WAIT_POLICY": "PASSIVE"},
    "workqueue": {"NUMBA_THREADING_LAYER": "workqueue"},
}
SCENARIOS = ("alone", "torch used", "busy core", "fork", "threads")

_LAYERS = textwrap.dedent("""
    import numpy as np
    rng = np.random.default_rng(0)
    def r(*s):
        return rng.standard_normal(s).astype(np.float32)
    LAYERS = {
        "MobileNetV2 dw 56x56x144, NHWC": (r(1, 56, 56, 144), r(144, 1, 3, 3),
                                           dict(padding=1, groups=144, channels_last=True)),
        "MobileNetV2 dw s2 56x56x192, NHWC": (r(1, 56, 56, 192), r(192, 1, 3, 3),
                                              dict(stride=2, padding=1, groups=192, channels_last=True)),
        "1x1 14x14 384->64, NHWC": (r(1, 14, 14, 384), r(64, 384, 1, 1), dict(channels_last=True)),
        "ResNet-50 3x3 56x56x64, NCHW": (r(1, 64, 56, 56), r(64, 64, 3, 3), dict(padding=1)),
        "dilated 3x3 d2 28x28x256, NCHW": (r(1, 256, 28, 28), r(256, 256, 3, 3),
                                                  dict(padding=2, dilation=2)),
    }
""")

_FASTCONV = _LAYERS + textwrap.dedent("""
    import json, sys, time, statistics, threading, subprocess
    scenario = sys.argv[1]
    if scenario == "torch used":
        import torch
        tx, tw = torch.randn(1, 64, 56, 56), torch.randn(64, 64, 3, 3)
    import numba
    import fastconv as F
    def call(name):
        x, w, kw = LAYERS[name]
        return F.conv2d(x, w, **kw)
    out = {}
    for name in LAYERS:
        call(name)
    if scenario in ("alone", "torch used", "busy core"):
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if scenario == "busy core" else None
        try:
            for name in LAYERS:
                ts, end = [], time.perf_counter() + 0.3
                while time.perf_counter() < end or len(ts) < 5:
                    if scenario == "torch used":
                        torch.nn.functional.conv2d(tx, tw, padding=1)
                    t0 = time.perf_counter()
                    call(name)
                    ts.append(time.perf_counter() - t0)
                out[name] = statistics.median(ts) * 1e3
        finally:
            if hog is not None:
                hog.kill()
    elif scenario == "fork":
        import multiprocessing as mp
        want = {name: call(name).tobytes() for name in LAYERS}
        def child(q):
            q.put(({name: call(name).tobytes() == want[name] for name in LAYERS}, numba.get_num_threads()))
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=child, args=(q,))
        p.start()
        p.join(120)
        same, child_threads = q.get() if p.exitcode == 0 else ({}, None)
        out = {"exit": p.exitcode, "correct": bool(same) and all(same.values()), "child_threads": child_threads}
    else:
        want = {name: call(name) for name in LAYERS}
        bad = []
        def work():
            for _ in range(5):
                for name in LAYERS:
                    if not np.array_equal(call(name), want[name]):
                        bad.append(name)
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out = {"exit": 0, "correct": not bad}
    print(json.dumps({"layer": numba.threading_layer(), "times_ms": out}))
""")

_TORCH = _LAYERS + textwrap.dedent("""
    import json, sys, time, statistics, subprocess
    import torch
    import torch.nn.functional as TF
    def args(name):
        x, w, kw = LAYERS[name]
        kw = dict(kw)
        t = torch.from_numpy(x)
        if kw.pop("channels_last", False):
            t = t.movedim(-1, 1)
            w = torch.from_numpy(w).contiguous(memory_format=torch.channels_last)
        else:
            w = torch.from_numpy(w)
        return t, w, kw
    prepared = {name: args(name) for name in LAYERS}
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if sys.argv[1] == "busy core" else None
    out = {}
    try:
        for name, (t, w, kw) in prepared.items():
            TF.conv2d(t, w, **kw)
            ts, end = [], time.perf_counter() + 0.3
            while time.perf_counter() < end or len(ts) < 5:
                t0 = time.perf_counter()
                TF.conv2d(t, w, **kw)
                ts.append(time.perf_counter() - t0)
            out[name] = statistics.median(ts) * 1e3
    finally:
        if hog is not None:
            hog.kill()
    print(json.dumps({"layer": "PyTorch", "times_ms": out}))
""")


def _run(script: str, scenario: str, env: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", script, scenario], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"exit {done.returncode}: {tail[:200]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(repeats: int = 1) -> dict:
    base = {k: v for k, v in os.environ.items() if k not in ("NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY")}
    results = {}
    for label, extra in CONFIGS.items():
        for scenario in SCENARIOS:
            runs = [_run(_FASTCONV, scenario, {**base, **extra}) for _ in range(repeats)]
            results[f"{label} | {scenario}"] = runs
            print(f"{label:50s} {scenario:12s} {json.dumps(runs[-1])[:160]}", file=sys.stderr)
    for scenario in ("alone", "busy core"):
        results[f"PyTorch | {scenario}"] = [_run(_TORCH, scenario, base) for _ in range(repeats)]
        print(f"{'PyTorch':50s} {scenario:12s} {json.dumps(results[f'PyTorch | {scenario}'][-1])[:160]}",
              file=sys.stderr)
    return {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "load_avg": list(os.getloadavg()),
            "configs": {k: v for k, v in CONFIGS.items()}, "results": results}


def _median(values):
    s = sorted(values)
    return s[len(s) // 2] if s else None


def render(doc: dict) -> str:
    res = doc["results"]
    layers = None
    for runs in res.values():
        for r in runs:
            if isinstance(r.get("times_ms"), dict) and "exit" not in r["times_ms"]:
                layers = list(r["times_ms"])
                break
        if layers:
            break
    layers = layers or []

    def time_cell(key, layer):
        vals = [r["times_ms"][layer] for r in res.get(key, []) if "times_ms" in r and layer in r["times_ms"]]
        errs = [r["error"] for r in res.get(key, []) if "error" in r]
        return f"{_median(vals):.3f}" if vals else (errs[0] if errs else "—")

    def check_cell(key):
        runs = res.get(key, [])
        if any("error" in r for r in runs):
            return "dies: " + next(r["error"] for r in runs if "error" in r)
        ok = [r["times_ms"] for r in runs]
        if all(o.get("exit") == 0 and o.get("correct") for o in ok):
            threads = {o.get("child_threads") for o in ok} - {None}
            return "runs, correct" + (f", on {', '.join(map(str, sorted(threads)))} thread(s)" if threads else "")
        return "; ".join(f"exit {o.get('exit')}, {'correct' if o.get('correct') else 'wrong or no result'}"
                         for o in ok)

    L = [f"# Thread runtimes for fastconv's CPU kernels ({doc['created']}, load average at start "
         f"{doc['load_avg'][0]:.2f})", "", __doc__.split("\n\n", 1)[1].strip(), ""]
    head = ["layer"] + [f"{c}: {s}" for c in CONFIGS for s in ("alone", "torch used", "busy core")] + \
        ["PyTorch alone", "PyTorch, core busy"]
    rows = [[layer] + [time_cell(f"{c} | {s}", layer) for c in CONFIGS for s in ("alone", "torch used", "busy core")]
            + [time_cell("PyTorch | alone", layer), time_cell("PyTorch | busy core", layer)] for layer in layers]
    L.append("Times in ms, one column per runtime and scenario:")
    L.append("")
    L.append("| " + " | ".join(head) + " |")
    L.append("|" + "---|" * len(head))
    L += ["| " + " | ".join(row) + " |" for row in rows]
    L.append("")
    L.append("| runtime | fork (child after the parent ran kernels) | four Python threads at once |")
    L.append("|---|---|---|")
    for c in CONFIGS:
        L.append(f"| {c} | {check_cell(f'{c} | fork')} | {check_cell(f'{c} | threads')} |")
    return "\n".join(L) + "\n"


def readme_block(doc: dict, report: str) -> str:
    """The README's summary: per layer, each runtime alone, beside PyTorch, with a core busy."""
    res = doc["results"]
    short = {"tbb (fastconv's default)": "TBB", "omp, libgomp's default spin": "OpenMP spin",
             "omp, OMP_WAIT_POLICY=PASSIVE (fastconv before)": "OpenMP passive", "workqueue": "workqueue"}
    layers = next((list(r["times_ms"]) for runs in res.values() for r in runs
                   if isinstance(r.get("times_ms"), dict) and "exit" not in r["times_ms"]), [])

    def cell(key, layer):
        vals = [r["times_ms"][layer] for r in res.get(key, []) if layer in r.get("times_ms", {})]
        return f"{_median(vals):.3f}" if vals else "—"

    head = ["layer (ms)"] + [f"{short[c]}: {s}" for c in CONFIGS if c != "workqueue"
                             for s in ("alone", "torch used", "busy core")] + ["PyTorch alone", "PyTorch busy"]
    lines = [f"Measured {doc['created']} by `python -m bench.runtimes` ([{report}]({report}) has every "
             "column, fork and threads):", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for layer in layers:
        row = [layer] + [cell(f"{c} | {s}", layer) for c in CONFIGS if c != "workqueue"
                         for s in ("alone", "torch used", "busy core")]
        row += [cell("PyTorch | alone", layer), cell("PyTorch | busy core", layer)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def update_readme(path: Path, doc: dict, report: str) -> None:
    start, end = "<!-- runtimes:start -->", "<!-- runtimes:end -->"
    text = path.read_text()
    if text.count(start) != 1 or text.count(end) != 1:
        raise ValueError(f"{path}: expected one {start} ... {end} block")
    head, rest = text.split(start, 1)
    path.write_text(head + start + "\n" + readme_block(doc, report) + "\n" + end + rest.split(end, 1)[1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.runtimes", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("bench/results/runtimes.json"))
    p.add_argument("--report", type=Path, default=Path("reports/runtimes.md"))
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per cell; medians are reported")
    p.add_argument("--render-only", action="store_true", help="rebuild the report from --out without running")
    p.add_argument("--update-readme", action="store_true", help="also fill README.md's runtimes block")
    args = p.parse_args(argv)
    if args.render_only:
        doc = json.loads(args.out.read_text())
    else:
        doc = measure(args.repeats)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1))
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(render(doc))
    if args.update_readme:
        update_readme(Path("README.md"), doc, args.report.as_posix())
    print(f"wrote {args.out} and {args.report}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
