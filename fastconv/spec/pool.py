"""PoolSpec and AdaptivePoolSpec: one pooling call, resolved once.

Each prints as a canonical string (tokens in :mod:`fastconv.spec.names`) that its
``parse`` reads back: ``Spec.parse(spec.name()) == spec``.

    >>> spec = resolve_pool("max_pool2d", "max", 2, (1, 64, 112, 112), 3, 2, 1)
    >>> spec.name()
    'max_pool2d_mb1_c64_ih112iw112_kh3kw3_sh2w2_ph1w1'
    >>> PoolSpec.parse(spec.name()) == spec, spec.out_size
    (True, (56, 56))
    >>> AdaptivePoolSpec.parse("adaptive_avg_pool2d_mb1_c512_ih14iw14_oh7ow7").out_size
    (7, 7)
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .._args import check_choice, int_tuple, is_int, resolve_pads, window_out_size
from .._arrays import INT_DTYPES
from . import names
from .conv import _ITEMSIZE, DTYPES, _shape, split_input_shape

POOL_MODES = ("max", "avg", "lp")
INT_NAMES = tuple(dt.name for dt in INT_DTYPES)


def _check_dtype(op, mode, dtype):
    """float16/32/64; max pooling also the integer dtypes (computed exactly in them)."""
    check_choice(op, "dtype", dtype, DTYPES + INT_NAMES if mode == "max" else DTYPES)


def _itemsize(dtype: str) -> int:
    return _ITEMSIZE.get(dtype) or np.dtype(dtype).itemsize


@dataclass(frozen=True)
class PoolSpec:
    mode: str  # "max" | "avg" | "lp"
    nd: int
    batch: int
    channels: int
    in_size: tuple
    kernel: tuple
    stride: tuple
    dilation: tuple
    pads: tuple  # ((begin, end), ...)
    out_size: tuple
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: int | None = None
    norm_type: float = 2.0
    return_indices: bool = False
    channels_last: bool = False
    dtype: str = "float32"

    @property
    def op(self) -> str:
        return f"{self.mode}_pool{self.nd}d"

    @property
    def input_shape(self):
        return _shape(self.batch, self.channels, self.in_size, self.channels_last)

    @property
    def output_shape(self):
        return _shape(self.batch, self.channels, self.out_size, self.channels_last)

    @property
    def flops(self) -> int:
        """One operation per window tap (compare or add; Lp also a power per tap)."""
        taps = math.prod(self.kernel)
        per = taps * (2 if self.mode == "lp" else 1)
        return self.batch * self.channels * math.prod(self.out_size) * per

    @property
    def min_bytes(self) -> int:
        elems = math.prod(self.input_shape) + math.prod(self.output_shape)
        extra = math.prod(self.output_shape) * 8 if self.return_indices else 0
        return elems * _itemsize(self.dtype) + extra

    def name(self) -> str:
        """Short canonical form; ``PoolSpec.parse`` reads it back.

        The stride is left out when it equals the kernel (the default); ``excludepad``,
        ``div<N>``, ``norm<p>`` (always for Lp) and ``indices`` appear when they are not
        the defaults.
        """
        parts = [self.op, f"mb{self.batch}", f"c{self.channels}", names.sizes("i", self.in_size),
                 names.sizes("k", self.kernel)]
        if self.stride != self.kernel:
            parts.append(names.steps("s", self.stride))
        if any(d != 1 for d in self.dilation):
            parts.append(names.steps("d", self.dilation))
        if any(p != (0, 0) for p in self.pads):
            parts.append(names.pads(self.pads))
        if self.ceil_mode:
            parts.append("ceil")
        if not self.count_include_pad:
            parts.append("excludepad")
        if self.divisor_override:
            parts.append(f"div{self.divisor_override}")
        if self.mode == "lp" or self.norm_type != 2.0:
            parts.append(f"norm{_number(self.norm_type)}")
        if self.return_indices:
            parts.append("indices")
        parts += names.layout_dtype(self.channels_last, self.dtype)
        return "_".join(parts)

    __str__ = name

    @classmethod
    def parse(cls, text: str) -> PoolSpec:
        """Read back a string made by :meth:`name`; tokens left out take the defaults."""
        m = re.fullmatch(r"(max|avg|lp)_pool([123])d_(.*)", text)
        if not m:
            raise ValueError(f"PoolSpec.parse: {text!r} does not start with max_pool<N>d_, avg_pool<N>d_ "
                             f"or lp_pool<N>d_")
        mode, nd = m.group(1), int(m.group(2))
        where = f"PoolSpec.parse: {text!r}"
        f = names.read(where, m.group(3), nd, _POOL_FIELDS, _POOL_TOKENS)
        names.require(where, f, "c", "in", "kernel")
        channels_last = f.get("nhwc", False)
        return resolve_pool(
            f"{mode}_pool{nd}d", mode, nd, _shape(f.get("mb", 1), f["c"], f["in"], channels_last), f["kernel"],
            f.get("stride"), f.get("pads", 0), f.get("dilation", 1), ceil_mode=f.get("ceil_mode", False),
            count_include_pad=f.get("count_include_pad", True), divisor_override=f.get("divisor_override"),
            norm_type=f.get("norm_type", 2.0), return_indices=f.get("return_indices", False),
            channels_last=channels_last, dtype=f.get("dtype", "float32"),
        )


def _number(value: float) -> str:
    """A float as short as reads back exactly: ``2``, ``2.5``, ``0.3333333333333333``, ``inf``."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


_POOL_FIELDS = ("mb", "c", "in", "kernel", "stride", "dilation", "pads", "nhwc", "dtype")
_INDICES = ("return_indices", r"indices", lambda m: True)
# PoolSpec's own tokens, as names.read takes them: (field, regex, value of the match)
_POOL_TOKENS = (
    ("ceil_mode", r"ceil", lambda m: True),
    ("count_include_pad", r"excludepad", lambda m: False),
    ("divisor_override", r"div(\d+)", lambda m: int(m.group(1))),
    ("norm_type", r"norm(.+)", lambda m: float(m.group(1))),
    _INDICES,
)


def resolve_pool(
    op: str,
    mode: str,
    nd: int,
    input_shape,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    *,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
    norm_type=2.0,
    return_indices=False,
    channels_last=False,
    dtype="float32",
) -> PoolSpec:
    check_choice(op, "mode", mode, POOL_MODES)
    _check_dtype(op, mode, dtype)
    batch, channels, in_size = split_input_shape(op, tuple(input_shape), nd, channels_last)
    if any(n < 1 for n in in_size):
        raise ValueError(f"{op}: input spatial size {tuple(in_size)} has an empty dimension")
    kernel = int_tuple(op, "kernel_size", kernel_size, nd)
    empty_stride = isinstance(stride, Sequence) and not isinstance(stride, str) and len(stride) == 0
    stride = kernel if stride is None or empty_stride else int_tuple(op, "stride", stride, nd)
    dilation = int_tuple(op, "dilation", dilation, nd)
    pads = resolve_pads(op, padding, in_size, kernel, stride, dilation)
    if divisor_override is not None:
        if not is_int(divisor_override) or divisor_override <= 0:
            raise ValueError(f"{op}: divisor_override={divisor_override!r} must be a positive int or None")
    if mode == "lp":
        if (not isinstance(norm_type, numbers.Real) or isinstance(norm_type, bool)
                or math.isnan(norm_type) or norm_type <= 0):
            raise ValueError(f"{op}: norm_type={norm_type!r} must be a positive number")
    out_size = window_out_size(op, in_size, kernel, stride, dilation, pads, ceil_mode)
    return PoolSpec(
        mode=mode, nd=nd, batch=int(batch), channels=int(channels), in_size=tuple(map(int, in_size)),
        kernel=kernel, stride=stride, dilation=dilation, pads=pads, out_size=out_size,
        ceil_mode=bool(ceil_mode), count_include_pad=bool(count_include_pad),
        divisor_override=divisor_override, norm_type=float(norm_type),
        return_indices=bool(return_indices), channels_last=bool(channels_last), dtype=dtype,
    )


@dataclass(frozen=True)
class AdaptivePoolSpec:
    mode: str  # "max" | "avg"
    nd: int
    batch: int
    channels: int
    in_size: tuple
    out_size: tuple
    return_indices: bool = False
    channels_last: bool = False
    dtype: str = "float32"

    @property
    def op(self) -> str:
        return f"adaptive_{self.mode}_pool{self.nd}d"

    @property
    def input_shape(self):
        return _shape(self.batch, self.channels, self.in_size, self.channels_last)

    @property
    def output_shape(self):
        return _shape(self.batch, self.channels, self.out_size, self.channels_last)

    @property
    def flops(self) -> int:
        total = self.batch * self.channels
        for n, o in zip(self.in_size, self.out_size):
            total *= sum(-(-((i + 1) * n) // o) - (i * n) // o for i in range(o))
        return total

    @property
    def min_bytes(self) -> int:
        return (math.prod(self.input_shape) + math.prod(self.output_shape)) * _itemsize(self.dtype)

    def name(self) -> str:
        """Short canonical form; ``AdaptivePoolSpec.parse`` reads it back."""
        parts = [self.op, f"mb{self.batch}", f"c{self.channels}", names.sizes("i", self.in_size),
                 names.sizes("o", self.out_size)]
        if self.return_indices:
            parts.append("indices")
        parts += names.layout_dtype(self.channels_last, self.dtype)
        return "_".join(parts)

    __str__ = name

    @classmethod
    def parse(cls, text: str) -> AdaptivePoolSpec:
        """Read back a string made by :meth:`name`."""
        m = re.fullmatch(r"adaptive_(max|avg)_pool([123])d_(.*)", text)
        if not m:
            raise ValueError(f"AdaptivePoolSpec.parse: {text!r} does not start with adaptive_max_pool<N>d_ "
                             f"or adaptive_avg_pool<N>d_")
        mode, nd = m.group(1), int(m.group(2))
        where = f"AdaptivePoolSpec.parse: {text!r}"
        f = names.read(where, m.group(3), nd, ("mb", "c", "in", "out", "nhwc", "dtype"), (_INDICES,))
        names.require(where, f, "c", "in", "out")
        channels_last = f.get("nhwc", False)
        return resolve_adaptive_pool(
            f"adaptive_{mode}_pool{nd}d", mode, nd, _shape(f.get("mb", 1), f["c"], f["in"], channels_last),
            f["out"], return_indices=f.get("return_indices", False), channels_last=channels_last,
            dtype=f.get("dtype", "float32"),
        )


def resolve_adaptive_pool(op, mode, nd, input_shape, output_size, *, return_indices=False,
                          channels_last=False, dtype="float32") -> AdaptivePoolSpec:
    _check_dtype(op, mode, dtype)
    batch, channels, in_size = split_input_shape(op, tuple(input_shape), nd, channels_last)
    if any(n < 1 for n in in_size):
        raise ValueError(f"{op}: input spatial size {in_size} has an empty dimension")
    if is_int(output_size):
        out = (int(output_size),) * nd
    else:
        try:
            items = list(output_size)
        except TypeError:
            raise TypeError(f"{op}: output_size must be an int or a tuple of {nd} ints/None, "
                            f"got {type(output_size).__name__}") from None
        if len(items) != nd:
            raise ValueError(f"{op}: output_size={output_size!r} must have {nd} entries")
        out = tuple(n if o is None else o for o, n in zip(items, in_size))
        if not all(is_int(o) for o in out):
            raise TypeError(f"{op}: output_size={output_size!r} must hold ints or None")
    if any(o < 1 for o in out):
        raise ValueError(f"{op}: output_size={output_size!r} must be >= 1 in every dimension")
    return AdaptivePoolSpec(mode=mode, nd=nd, batch=int(batch), channels=int(channels),
                            in_size=tuple(map(int, in_size)), out_size=tuple(map(int, out)),
                            return_indices=bool(return_indices),
                            channels_last=bool(channels_last), dtype=dtype)
