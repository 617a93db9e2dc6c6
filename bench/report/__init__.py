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

Modules: ``derive`` (JSON -> per-layer entries), ``summary`` (geometric means, separable
against standard pairs), ``compare`` (regression check), ``console`` (the run's console
lines), ``cells`` (number formats, Markdown tables), ``tables`` (the per-layer tables),
``markdown`` (the report's sections), ``plots`` (the PNGs), ``build`` (write a report),
``cli`` (``python -m bench.report``).
"""

from .build import build_report, merge
from .cli import main
from .compare import compare, format_comparison
from .console import summarize_problem
from .derive import ceilings, derive, load
from .markdown import render_markdown
from .plots import ROLE_COLORS, plot_dw_vs_standard, plot_ratios, plot_roofline
from .summary import by_role, dw_pairs, geomean, summary
from .tables import NOISY_IQR

__all__ = [
    "NOISY_IQR", "ROLE_COLORS", "build_report", "by_role", "ceilings", "compare", "derive", "dw_pairs",
    "format_comparison", "geomean", "load", "main", "merge", "plot_dw_vs_standard", "plot_ratios", "plot_roofline",
    "render_markdown", "summarize_problem", "summary",
]
