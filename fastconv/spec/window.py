"""WindowSpec: one window-op call (unfold, fold, max_unpool, fractional_max_pool2d), resolved.

It prints as a canonical string (tokens in :mod:`fastconv.spec.names`, plus ``g…`` for
the window-position grid) that :meth:`WindowSpec.parse` reads back.

    >>> spec = WindowSpec("unfold", 2, 1, 3, (8, 8), (7, 7), (2, 2), (1, 1), (1, 1), ((0, 0), (0, 0)))
    >>> spec.name()
    'unfold2d_mb1_c3_ih8iw8_gh7gw7_kh2kw2'
    >>> WindowSpec.parse(spec.name()) == spec
    True
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from . import names

_FIELDS = ("mb", "c", "in", "kernel", "stride", "dilation", "pads", "dtype")


@dataclass(frozen=True)
class WindowSpec:
    """One window-op call, resolved.

    ``image`` is the large spatial size and ``grid`` the window-position grid:
    unfold image -> grid, fold grid -> image, max_unpool grid -> image,
    fractional_max_pool2d image -> grid. ``pads`` are (begin, end) per spatial dim.
    """

    op: str
    nd: int
    batch: int
    channels: int
    image: tuple
    grid: tuple
    kernel: tuple
    stride: tuple
    dilation: tuple
    pads: tuple
    return_indices: bool = False
    dtype: str = "float32"

    @property
    def taps(self) -> int:
        return math.prod(self.kernel)

    @property
    def input_shape(self) -> tuple:
        if self.op == "unfold" or self.op.startswith("fractional"):
            return (self.batch, self.channels, *self.image)
        if self.op == "fold":
            return (self.batch, self.channels * self.taps, math.prod(self.grid))
        return (self.batch, self.channels, *self.grid)

    @property
    def output_shape(self) -> tuple:
        if self.op == "unfold":
            return (self.batch, self.channels * self.taps, math.prod(self.grid))
        if self.op.startswith("fractional"):
            return (self.batch, self.channels, *self.grid)
        return (self.batch, self.channels, *self.image)

    def name(self) -> str:
        """``<op><N>d_mb<N>_c<C>_i<sizes>_g<sizes>_k<sizes>[_s..][_d..][_p..][_indices][_f64]``
        (unfold and fold gain the ``<N>d`` the other ops carry in their names)."""
        parts = [self.op if self.op[-2:] in ("1d", "2d", "3d") else f"{self.op}{self.nd}d",
                 f"mb{self.batch}", f"c{self.channels}", names.sizes("i", self.image), _grid(self.grid),
                 names.sizes("k", self.kernel)]
        if any(s != 1 for s in self.stride):
            parts.append(names.steps("s", self.stride))
        if any(d != 1 for d in self.dilation):
            parts.append(names.steps("d", self.dilation))
        if any(p != (0, 0) for p in self.pads):
            parts.append(names.pads(self.pads))
        if self.return_indices:
            parts.append("indices")
        parts += names.layout_dtype(False, self.dtype)
        return "_".join(parts)

    __str__ = name

    @classmethod
    def parse(cls, text: str) -> WindowSpec:
        """Read back a string made by :meth:`name`; stride, dilation and pads left out take defaults."""
        m = re.fullmatch(r"(unfold|fold|max_unpool|fractional_max_pool)([123])d_(.*)", text)
        if not m:
            raise ValueError(f"WindowSpec.parse: {text!r} does not start with unfold<N>d_, fold<N>d_, "
                             f"max_unpool<N>d_ or fractional_max_pool<N>d_")
        base, nd = m.group(1), int(m.group(2))
        op = base if base in ("unfold", "fold") else f"{base}{nd}d"
        where = f"WindowSpec.parse: {text!r}"
        axes = names.AXES[nd]
        own = (("grid", "".join(rf"g{a}(\d+)" for a in axes), lambda g: tuple(int(v) for v in g.groups())),
               ("return_indices", r"indices", lambda g: True))
        f = names.read(where, m.group(3), nd, _FIELDS, own)
        names.require(where, f, "c", "in", "grid", "kernel", forms={"grid": "g<sizes>"})
        return cls(op, nd, f.get("mb", 1), f["c"], f["in"], f["grid"], f["kernel"], f.get("stride", (1,) * nd),
                   f.get("dilation", (1,) * nd), f.get("pads", ((0, 0),) * nd), f.get("return_indices", False),
                   f.get("dtype", "float32"))


def _grid(values) -> str:
    return "".join(f"g{a}{n}" for a, n in zip(names.AXES[len(values)], values))
