"""The training-step benchmark (issue 13): a converted model against the same model on PyTorch.

    python -m bench.training --out bench/results/latest-training.json
    python -m bench.run --quick --also training           # beside the main run, in its report

One training step is forward, cross-entropy loss, backward and an SGD update (learning
rate 0.01, momentum 0.9) of ResNet-18 and MobileNetV2 (``bench.models``: as torchvision
defines them, 1000 classes as the real nets) on a batch of 8 images of 3x112x112, the
model in train mode (batch norm on batch statistics, MobileNetV2's dropout on). Both sides
build the model from the same seed, so with the same weights and data: the PyTorch worker
runs it as built, the fastconv worker after ``fastconv.torch.convert(model, inplace=True)``
(every conv and pooling layer on fastconv's kernels, everything else PyTorch's). Layouts:
``nchw`` (contiguous model and input) and ``nhwc`` (model and input in
``torch.channels_last``).

Each library runs in its own worker process with its own default environment, on the
process mode's machinery (``bench.processes``: the workers, their environments, the
alternating rounds): per model and layout both workers make the first step (timed apart;
fastconv's includes compiling or loading its kernels) and reply its loss, which must agree
(``LOSS_RTOL``), then take turns over rounds timing one step per call.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from .timing import Budget, summarize

MODELS = ("resnet18", "mobilenet_v2")
BATCH, SIZE, CLASSES = 8, 112, 1000
LEARNING_RATE, MOMENTUM = 0.01, 0.9
LOSS_RTOL = 1e-3
# Per model and layout: a training step takes 0.1-1 s here, so rounds of a few steps each.
BUDGET = Budget(warmup_s=0.0, measure_s=2.0, min_reps=10, max_reps=40, rounds=5)
QUICK_BUDGET = Budget(warmup_s=0.0, measure_s=1.0, min_reps=5, max_reps=20, rounds=5)
ARG_SETS = 2  # input batches the steps cycle through


def training_step(library: str, cmd: dict):
    """In a worker: (key, step(i), pool size, info) for one model's training step.

    ``info`` holds the first step's loss and time and, for fastconv, what ``convert`` swapped
    and left."""
    import torch

    from .models import MODELS as BUILDERS

    layout, seed, classes = cmd["layout"], cmd["seed"], cmd["classes"]
    torch.manual_seed(seed)
    model = BUILDERS[cmd["model"]](num_classes=classes)
    info = {"library": library, "model": cmd["model"], "layout": layout}
    if library == "fastconv":
        import fastconv.torch as FT

        model, report = FT.convert(model, inplace=True)
        info.update(swapped=len(report.swapped), left=[f"{name}: {cls}" for name, cls in report.left])
    fmt = torch.channels_last if layout == "nhwc" else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    gen = torch.Generator().manual_seed(seed)
    xs = [torch.randn(cmd["batch"], 3, cmd["size"], cmd["size"], generator=gen).contiguous(memory_format=fmt)
          for _ in range(ARG_SETS)]
    ys = [torch.randint(0, classes, (cmd["batch"],), generator=gen) for _ in range(ARG_SETS)]
    opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
    loss_fn = torch.nn.functional.cross_entropy

    def step(i):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xs[i]), ys[i])
        loss.backward()
        opt.step()
        return loss

    torch.manual_seed(seed + 1)  # the same dropout masks on both sides
    start = time.perf_counter()
    try:
        info["first_loss"] = float(step(0).item())
        info["error"] = None
    except Exception as exc:  # reported, not fatal
        info["first_loss"], info["error"] = None, f"{type(exc).__name__}: {exc}"
    info["first_step_s"] = time.perf_counter() - start
    return f"{layout}/{library}", step, ARG_SETS, info


def loss_check(losses: dict) -> dict:
    """The first step's loss of both libraries, which must agree within LOSS_RTOL."""
    a, b = losses.get("fastconv"), losses.get("torch")
    if a is None or b is None:
        return {"ok": False, "fastconv": a, "torch": b, "rtol": LOSS_RTOL}
    rel = abs(a - b) / max(abs(b), 1e-30)
    return {"ok": bool(rel <= LOSS_RTOL), "fastconv": a, "torch": b, "rel_err": rel, "rtol": LOSS_RTOL}


def run_models(pair, models, layouts, budget: Budget, *, batch=BATCH, size=SIZE, classes=CLASSES, seed=0,
               progress=None) -> list[dict]:
    """Time each model's training step on both workers of ``pair`` (a ``ProcessPair``); one row per
    (model, layout, library)."""
    rows = []
    for model in models:
        for layout in layouts:
            cmd = dict(model=model, layout=layout, batch=batch, size=size, classes=classes, seed=seed,
                       threads=pair.threads)
            infos = {lib: w.call("training", **cmd) for lib, w in pair.workers.items()}
            check = loss_check({lib: info["first_loss"] for lib, info in infos.items()})
            errors = {f"{layout}/{lib}": info["error"] for lib, info in infos.items()}
            samples, medians = pair.alternate(errors, budget, errors, untimed=0)  # steps of 0.1-1 s: warm at once
            for lib, info in infos.items():
                key = f"{layout}/{lib}"
                rows.append({**info, "batch": batch, "size": size, "classes": classes, "error": errors[key],
                             "loss_check": check, "stats": summarize(samples[key]),
                             "samples_s": [float(f"{t:.6g}") for t in samples[key]],
                             "round_medians_s": [float(f"{t:.6g}") for t in medians[key]]})
            if progress is not None:
                progress(_summary_line(rows[-2:]))
    return rows


def _summary_line(rows) -> str:
    by = {r["library"]: r for r in rows}
    f, t = (by[lib]["stats"].get("median_s") for lib in ("fastconv", "torch"))
    ratio = f"{f / t:.2f}x" if f and t else "—"
    r = rows[0]
    ms = "/".join("—" if v is None else f"{v * 1e3:.0f}" for v in (f, t))
    return (f"training {r['model']} {r['layout']}: fastconv/PyTorch {ms} ms = {ratio}; first loss "
            f"{'agrees' if r['loss_check']['ok'] else 'DIFFERS'} ({r['loss_check'].get('fastconv')} vs "
            f"{r['loss_check'].get('torch')})")


def run_pass(out: Path, *, models=MODELS, layouts=("nchw", "nhwc"), quick=False, batch=BATCH, size=SIZE,
             classes=CLASSES, seed=0, keep_env=False, threads=None, command=None) -> dict:
    """The training pass: time the models, write and return the result doc (``bench.run --also training``)."""
    from . import machine
    from .processes import ProcessPair
    from .run import SCHEMA, _write_json

    budget = QUICK_BUDGET if quick else BUDGET
    doc = {"schema": SCHEMA, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "command": command or ["python", "-m", "bench.training"],
           "settings": {"pass": "training", "mode": "process", "busy_core": False, "suites": [], "models": list(models),
                        "layouts": list(layouts), "batch": batch, "size": size, "classes": classes, "seed": seed,
                        "optimizer": f"SGD lr {LEARNING_RATE} momentum {MOMENTUM}", "dtype": "float32",
                        "threads": threads, "quick": quick, "budget": budget.to_json()},
           "machine": machine.describe(), "environment": {}, "problems": [], "results": [], "training": [],
           "finished": False}
    started = time.perf_counter()
    print(f"[training] {', '.join(models)}, batch {batch}, 3x{size}x{size}, {classes} classes; load average "
          f"{os.getloadavg()[0]:.2f}", file=sys.stderr)
    pair = ProcessPair("float32", keep_env=keep_env, threads=threads)
    try:
        doc["environment"]["workers"] = pair.describe()
        doc["training"] = run_models(pair, models, layouts, budget, batch=batch, size=size, classes=classes,
                                     seed=seed, progress=lambda line: print("  " + line, file=sys.stderr))
    finally:
        pair.close()
    doc["finished"] = True
    doc["duration_s"] = time.perf_counter() - started
    doc["load_avg_end"] = list(os.getloadavg())
    _write_json(out, doc)
    print(f"wrote {out} ({doc['duration_s']:.0f} s)", file=sys.stderr)
    return doc


def step_medians(rows) -> dict:
    """{(model, layout): {library: row}} of a training doc's rows."""
    out = {}
    for r in rows:
        out.setdefault((r["model"], r["layout"]), {})[r["library"]] = r
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.training", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", choices=("resnet18", "mobilenet_v2", "tiny"),
                   help=f"repeatable; default {', '.join(MODELS)}")
    p.add_argument("--layout", default="nchw,nhwc")
    p.add_argument("--batch", type=int, default=BATCH)
    p.add_argument("--size", type=int, default=SIZE)
    p.add_argument("--classes", type=int, default=CLASSES)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("bench/results/latest-training.json"))
    args = p.parse_args(argv)
    doc = run_pass(args.out, models=tuple(args.model or MODELS), layouts=tuple(args.layout.split(",")),
                   quick=args.quick, batch=args.batch, size=args.size, classes=args.classes, seed=args.seed,
                   command=["python", "-m", "bench.training", *(argv if argv is not None else sys.argv[1:])])
    return 0 if all(r["loss_check"]["ok"] and r["error"] is None for r in doc["training"]) else 1


if __name__ == "__main__":
    sys.exit(main())

