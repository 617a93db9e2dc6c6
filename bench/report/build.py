"""Write a report: merge runs, derive entries, draw the plots, render the Markdown."""

from __future__ import annotations

import os
from pathlib import Path

from .derive import ceilings, derive
from .markdown import render_markdown
from .plots import plot_dw_vs_standard, plot_ratios, plot_roofline
from .readme import update_readme
from .summary import dw_pairs


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


def build_report(docs: list[dict], outdir, stem: str = "report", sources=None, readme=None,
                 companions: dict | None = None) -> list[Path]:
    """Write NAME.md and the PNGs into ``outdir``, and the targets block of ``readme`` when
    given; return the paths written. ``companions`` ({"inprocess": doc, "busy": doc}) are the
    extra passes the targets need (``bench.run --also``)."""
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
    md = render_markdown(doc, entries, pairs, {"roofline": roof, "dw": dwp, "ratios": rat}, sources, companions)
    path = outdir / f"{stem}.md"
    path.write_text(md)
    written.append(path)
    written += [p for p in (roof, dwp, rat) if p is not None]
    if readme is not None:
        readme = Path(readme)
        written.append(update_readme(readme, doc, entries, companions, Path(os.path.relpath(path, readme.parent))))
    return written
