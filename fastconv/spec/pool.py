"""PoolSpec and AdaptivePoolSpec: one pooling call, resolved once."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

from .._args import check_choice, int_tuple, is_int, resolve_pads, window_out_size
from .conv import _AXES, _ITEMSIZE, DTYPES, _shape, split_input_shape

POOL_MODES = ("max", "avg", "lp")


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
        return elems * _ITEMSIZE[self.dtype] + extra

    def name(self) -> str:
        axes = _AXES[self.nd]
        parts = [self.op, f"mb{self.batch}", f"c{self.channels}",
                 "".join(f"i{a}{n}" for a, n in zip(axes, self.in_size)),
                 "".join(f"k{a}{n}" for a, n in zip(axes, self.kernel))]
        if self.stride != self.kernel:
            parts.append("s" + "".join(f"{a}{n}" for a, n in zip(axes, self.stride)))
        if any(d != 1 for d in self.dilation):
            parts.append("d" + "".join(f"{a}{n}" for a, n in zip(axes, self.dilation)))
        if any(p != (0, 0) for p in self.pads):
            parts.append("p" + "".join(
                f"{a}{b}" if b == e else f"{a}{b}.{e}" for a, (b, e) in zip(axes, self.pads)))
        if self.ceil_mode:
            parts.append("ceil")
        if self.mode == "avg" and not self.count_include_pad:
            parts.append("excludepad")
        if self.divisor_override:
            parts.append(f"div{self.divisor_override}")
        if self.mode == "lp":
            parts.append(f"norm{self.norm_type:g}")
        if self.channels_last:
            parts.append("nhwc")
        if self.dtype != "float32":
            parts.append({"float16": "f16", "float64": "f64"}[self.dtype])
        return "_".join(parts)

    __str__ = name


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
    check_choice(op, "dtype", dtype, DTYPES)
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
        return (math.prod(self.input_shape) + math.prod(self.output_shape)) * _ITEMSIZE[self.dtype]

    def name(self) -> str:
        axes = _AXES[self.nd]
        parts = [self.op, f"mb{self.batch}", f"c{self.channels}",
                 "".join(f"i{a}{n}" for a, n in zip(axes, self.in_size)),
                 "".join(f"o{a}{n}" for a, n in zip(axes, self.out_size))]
        if self.channels_last:
            parts.append("nhwc")
        if self.dtype != "float32":
            parts.append({"float16": "f16", "float64": "f64"}[self.dtype])
        return "_".join(parts)

    __str__ = name


def resolve_adaptive_pool(op, mode, nd, input_shape, output_size, *, return_indices=False,
                          channels_last=False, dtype="float32") -> AdaptivePoolSpec:
    check_choice(op, "dtype", dtype, DTYPES)
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
