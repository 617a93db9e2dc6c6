"""Numbers as report cells (milliseconds, ratios, percentages, sizes) and Markdown tables."""

from __future__ import annotations


def fmt_ms(t):
    if t is None:
        return "—"
    ms = t * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def fmt_num(v, digits=2):
    return "—" if v is None else f"{v:.{digits}f}"


def fmt_ratio(v):
    return "—" if v is None else f"{v:.2f}"


def fmt_pct(v):
    return "—" if v is None else f"{v:.0f}%"


def md_table(header, rows) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def fmt_bytes(n) -> str:
    if not n:
        return "—"
    for unit, size in (("GB", 1024 ** 3), ("MB", 1024 ** 2), ("KB", 1024)):
        if n >= size:
            return f"{n / size:.0f} {unit}" if n / size >= 10 else f"{n / size:.1f} {unit}"
    return f"{n} B"
