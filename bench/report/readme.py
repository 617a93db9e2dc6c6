"""Keep the README's benchmark block (between two marker comments) in step with a run."""

from __future__ import annotations

from pathlib import Path

from .markdown import mode_text
from .targets import targets_table

START = "<!-- bench-targets:start -->"
END = "<!-- bench-targets:end -->"


def update_readme(path: Path, doc, entries, companions, report: Path) -> Path:
    """Replace the README's marked block with this run's targets table; return ``path``."""
    text = path.read_text()
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"{path}: expected one {START} ... {END} block to fill")
    s = doc.get("settings", {})
    git = doc.get("machine", {}).get("git", {})
    block = [START,
             f"Measured by `{' '.join(doc.get('command', []))}` on {doc.get('created', '?')}, commit "
             f"`{(git.get('commit') or '?')[:12]}`, {s.get('dtype')}, {mode_text(s)}; the whole run, per "
             f"layer, is in [{report.as_posix()}]({report.as_posix()}). Ratios are fastconv time / PyTorch time "
             "in the same layout, geometric means over layers.",
             "", *targets_table(doc, entries, companions), END]
    head, rest = text.split(START, 1)
    path.write_text(head + "\n".join(block) + rest.split(END, 1)[1])
    return path
