"""The run's console lines, one per layout of a problem just timed."""

from __future__ import annotations

from .cells import fmt_ms, fmt_num
from .derive import derive


def summarize_problem(doc, suite, layer, name) -> list[str]:
    """One line per layout for the run's console, from the partial document."""
    lines = []
    key = (suite, layer, name)
    sub = {**doc, "problems": [p for p in doc["problems"] if (p["suite"], p["layer"], p["name"]) == key]}
    for e in derive(sub):
        fc = f"{fmt_ms(e['t_fastconv'])} ms ({e['fastconv_algo']})" if e["t_fastconv"] else "n/a"
        torch = f"{fmt_ms(e['t_torch'])} ms" if e["t_torch"] else "n/a"
        ratio = f"ratio {e['ratio']:.2f}" if e["ratio"] is not None else ""
        flags = " CHECK FAILED: " + ",".join(e["checks_failed"]) if e["checks_failed"] else ""
        if e["errors"]:
            flags += " ERRORS: " + "; ".join(f"{k}: {v}" for k, v in e["errors"].items())
        lines.append(f"{suite}:{layer} [{e['layout']}] fastconv {fc}, PyTorch {torch} {ratio}"
                     f" {fmt_num(e['gflops'], 1)} GFLOP/s{flags}")
    return lines
