"""The training-step section and targets, from a ``bench.training`` doc (``--also training``)."""

from __future__ import annotations

from .cells import fmt_ms, fmt_num, fmt_ratio, md_table
from .derive import div

TRAINING_GOAL = 1.0
MODEL_NAMES = {"resnet18": "ResNet-18", "mobilenet_v2": "MobileNetV2", "tiny": "tiny test net"}


def _pairs(doc):
    """[(model, layout, fastconv row, torch row)] in the run's order."""
    out = {}
    for r in doc.get("training", []):
        out.setdefault((r["model"], r["layout"]), {})[r["library"]] = r
    return [(m, lay, libs.get("fastconv"), libs.get("torch")) for (m, lay), libs in out.items()]


def _stat(row, key):
    return ((row or {}).get("stats") or {}).get(key)


def training_target_rows(doc) -> list[list]:
    """One targets-table row per model and layout: step time fastconv / PyTorch, at most 1.0."""
    rows = []
    for model, layout, f, t in _pairs(doc):
        value = div(_stat(f, "median_s"), _stat(t, "median_s"))
        spread = (div(_stat(f, "q1_s"), _stat(t, "q3_s")), div(_stat(f, "q3_s"), _stat(t, "q1_s")))
        n = min(_stat(f, "n") or 0, _stat(t, "n") or 0)
        rows.append([f"training step, {MODEL_NAMES.get(model, model)}: converted / PyTorch", layout, value, spread, n,
                     TRAINING_GOAL, "at most"])
    return rows


def training_section(doc) -> list[str]:
    from ..machine import is_busy

    s = doc.get("settings", {})
    mach = doc.get("machine", {})
    load = (mach.get("load_avg") or [None])[0]
    cpus = (mach.get("cpu") or {}).get("affinity") or 1
    L = ["## Training step", "",
         f"One training step (forward, cross-entropy, backward, {s.get('optimizer', 'SGD')}) of each model in train "
         f"mode, batch {s.get('batch')}, 3x{s.get('size')}x{s.get('size')} input, {s.get('classes')} classes "
         "(`bench/models.py`: the nets as torchvision defines them): the model converted by "
         "`fastconv.torch.convert` against the same model (same seed, same weights, same data) on PyTorch's own "
         "kernels, each in its own process with its own default environment, alternating over rounds "
         f"(`bench/training.py`). Run {doc.get('created', '?')}, load average {fmt_num(load)} at the start. Times "
         "are median step times in milliseconds with the quartiles; the first step (compiling or loading "
         "fastconv's kernels) is timed apart; *loss* is the first step's loss on each side.", ""]
    if load is not None and is_busy(load, cpus):
        L += [f"**The machine was shared** (load average {load:.1f} on {cpus} CPUs): PyTorch's spinning OpenMP "
              "workers lose whole scheduler ticks there, so these ratios say how each side copes with a busy "
              "machine, not how fast it is on a quiet one.", ""]
    rows = []
    for model, layout, f, t in _pairs(doc):
        check = (f or t or {}).get("loss_check") or {}
        ratio = div(_stat(f, "median_s"), _stat(t, "median_s"))
        lo, hi = div(_stat(f, "q1_s"), _stat(t, "q3_s")), div(_stat(f, "q3_s"), _stat(t, "q1_s"))
        loss = (f"{check.get('fastconv'):.5f} / {check.get('torch'):.5f}"
                if check.get("fastconv") is not None and check.get("torch") is not None else "—")
        errors = "; ".join(r["error"] for r in (f, t) if r and r.get("error"))
        rows.append([MODEL_NAMES.get(model, model), layout, _quartiles(f), _quartiles(t),
                     f"**{fmt_ratio(ratio)}**" if ratio is not None and ratio <= TRAINING_GOAL else fmt_ratio(ratio),
                     f"{fmt_ratio(lo)}–{fmt_ratio(hi)}", min(_stat(f, "n") or 0, _stat(t, "n") or 0),
                     fmt_ms((f or {}).get("first_step_s")), fmt_ms((t or {}).get("first_step_s")),
                     loss + ("" if check.get("ok") else " **differ**"), errors or ""])
    L += md_table(["model", "layout", "fastconv (q1–q3)", "PyTorch (q1–q3)", "ratio", "spread", "steps",
                   "first step fastconv (ms)", "first step PyTorch (ms)", "loss fastconv / PyTorch", "errors"], rows)
    left = sorted({x for r in doc.get("training", []) for x in r.get("left") or []})
    swapped = {r["model"]: r.get("swapped") for r in doc.get("training", []) if r["library"] == "fastconv"}
    L += ["", "Layers `convert` swapped: " + ", ".join(f"{MODEL_NAMES.get(m, m)} {n}" for m, n in swapped.items())
          + (f"; left on PyTorch: {', '.join(left)}" if left else "; none left on PyTorch") + ".", ""]
    return L


def _quartiles(row) -> str:
    med = _stat(row, "median_s")
    if med is None:
        return "—"
    return f"{fmt_ms(med)} ({fmt_ms(_stat(row, 'q1_s'))}–{fmt_ms(_stat(row, 'q3_s'))})"
