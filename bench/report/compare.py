"""Regression check: fastconv/PyTorch ratios of a new run against an old one."""

from __future__ import annotations

from .derive import derive


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
