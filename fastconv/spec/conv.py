"""ConvSpec: one convolution call, resolved once into plain, hashable numbers.

Backends, the benchmark harness and the tests see only this. It computes the output
shape, FLOPs, parameters and minimum bytes moved, keys kernel caches, and prints as
a short canonical string (benchdnn style) that ``ConvSpec.parse`` reads back.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

from .._args import (
    ACTIVATIONS,
    PADDING_MODES,
    check_choice,
    check_flag,
    check_padding_value,
    int_tuple,
    is_int,
    padding_pairs,
    resolve_pads,
    window_out_size,
)
from . import names

DTYPES = ("float16", "float32", "float64")
_ITEMSIZE = {"float16": 2, "float32": 4, "float64": 8}


@dataclass(frozen=True)
class ConvSpec:
    transposed: bool
    nd: int
    batch: int
    in_channels: int
    out_channels: int
    groups: int
    in_size: tuple
    kernel: tuple
    stride: tuple
    dilation: tuple
    pads: tuple  # ((begin, end), ...) per spatial dim
    out_size: tuple
    output_padding: tuple = ()
    padding_mode: str = "zeros"
    padding_value: float = 0.0
    has_bias: bool = False
    activation: str | None = None
    channels_last: bool = False
    dtype: str = "float32"

    # ---- derived sizes -------------------------------------------------------
    @property
    def op(self) -> str:
        return f"conv_transpose{self.nd}d" if self.transposed else f"conv{self.nd}d"

    @property
    def in_per_group(self) -> int:
        return self.in_channels // self.groups

    @property
    def out_per_group(self) -> int:
        return self.out_channels // self.groups

    @property
    def is_depthwise(self) -> bool:
        return not self.transposed and self.groups == self.in_channels and self.groups > 1

    @property
    def is_pointwise(self) -> bool:
        return (
            not self.transposed
            and all(k == 1 for k in self.kernel)
            and all(p == (0, 0) for p in self.pads)
        )

    @property
    def input_shape(self) -> tuple:
        return _shape(self.batch, self.in_channels, self.in_size, self.channels_last)

    @property
    def output_shape(self) -> tuple:
        return _shape(self.batch, self.out_channels, self.out_size, self.channels_last)

    @property
    def weight_shape(self) -> tuple:
        if self.transposed:
            return (self.in_channels, self.out_per_group, *self.kernel)
        return (self.out_channels, self.in_per_group, *self.kernel)

    @property
    def macs(self) -> int:
        """Multiply-adds that touch real (non-padding) input or output: the dense count."""
        taps = math.prod(self.kernel)
        if self.transposed:
            return self.batch * self.in_channels * math.prod(self.in_size) * self.out_per_group * taps
        return self.batch * self.out_channels * math.prod(self.out_size) * self.in_per_group * taps

    @property
    def flops(self) -> int:
        """2 * MACs, plus one add per output element for the bias."""
        extra = self.batch * self.out_channels * math.prod(self.out_size) if self.has_bias else 0
        return 2 * self.macs + extra

    @property
    def params(self) -> int:
        return math.prod(self.weight_shape) + (self.out_channels if self.has_bias else 0)

    @property
    def itemsize(self) -> int:
        return _ITEMSIZE[self.dtype]

    @property
    def min_bytes(self) -> int:
        """Bytes that any algorithm must move: read input and weight (and bias), write output."""
        elems = math.prod(self.input_shape) + math.prod(self.output_shape) + self.params
        return elems * self.itemsize

    @property
    def arithmetic_intensity(self) -> float:
        return self.flops / max(self.min_bytes, 1)

    def with_(self, **changes) -> ConvSpec:
        return replace(self, **changes)

    # ---- canonical string ----------------------------------------------------
    def name(self) -> str:
        """Short canonical form; defaults are omitted and ``ConvSpec.parse`` reads it back.

        >>> spec = resolve_conv("conv2d", (1, 64, 56, 56), (64, 64, 3, 3), padding=1)
        >>> spec.name()
        'conv2d_mb1_g1ic64oc64_ih56iw56_kh3kw3_ph1w1'
        >>> ConvSpec.parse(spec.name()) == spec, spec.out_size, spec.flops
        (True, (56, 56), 231211008)
        """
        parts = [self.op, f"mb{self.batch}", f"g{self.groups}ic{self.in_channels}oc{self.out_channels}",
                 names.sizes("i", self.in_size), names.sizes("k", self.kernel)]
        if any(s != 1 for s in self.stride):
            parts.append(names.steps("s", self.stride))
        if any(d != 1 for d in self.dilation):
            parts.append(names.steps("d", self.dilation))
        if any(p != (0, 0) for p in self.pads):
            parts.append(names.pads(self.pads))
        if self.transposed and any(self.output_padding):
            parts.append(names.steps("op", self.output_padding))
        if self.padding_mode != "zeros":
            mode = self.padding_mode
            if mode == "constant":
                mode += f"{self.padding_value!r}"
            parts.append(f"pm{mode}")
        if self.has_bias:
            parts.append("bias")
        if self.activation:
            parts.append(self.activation)
        parts += names.layout_dtype(self.channels_last, self.dtype)
        return "_".join(parts)

    __str__ = name

    @classmethod
    def parse(cls, text: str) -> ConvSpec:
        """Read back a string made by :meth:`name`; sizes left out take defaults."""
        m = re.fullmatch(r"conv(_transpose)?([123])d_(.*)", text)
        if not m:
            raise ValueError(f"ConvSpec.parse: {text!r} does not start with conv<N>d_ or conv_transpose<N>d_")
        transposed, nd, rest = bool(m.group(1)), int(m.group(2)), m.group(3)
        where = f"ConvSpec.parse: {text!r}"
        f = names.read(where, rest, nd, _FIELDS + (("output_padding",) if transposed else ()), _OWN_TOKENS)
        names.require(where, f, "g_ic_oc", "in", "kernel")
        groups, in_channels, out_channels = f["g_ic_oc"]
        weight = (
            (in_channels, out_channels // groups, *f["kernel"])
            if transposed
            else (out_channels, in_channels // groups, *f["kernel"])
        )
        mode, value = f.get("padding_mode", ("zeros", 0.0))
        channels_last = f.get("nhwc", False)
        return resolve_conv(
            ("conv_transpose" if transposed else "conv") + f"{nd}d",
            _shape(f.get("mb", 1), in_channels, f["in"], channels_last),
            weight,
            stride=f.get("stride", 1), padding=f.get("pads", 0), dilation=f.get("dilation", 1),
            groups=groups, output_padding=f.get("output_padding", 0),
            padding_mode=mode, padding_value=value, has_bias=f.get("bias", False),
            activation=f.get("activation"), channels_last=channels_last,
            dtype=f.get("dtype", "float32"),
        )


_FIELDS = ("mb", "g_ic_oc", "in", "kernel", "stride", "dilation", "pads", "nhwc", "dtype")


def _padding_mode(m) -> tuple:
    mode = m.group(1)
    if mode.startswith("constant"):
        return "constant", float(mode[len("constant"):] or 0.0)
    return mode, 0.0


# ConvSpec's own tokens, as names.read takes them: (field, regex, value of the match)
_OWN_TOKENS = (
    ("padding_mode", r"pm(.+)", _padding_mode),
    ("bias", r"bias", lambda m: True),
    ("activation", r"relu6?", lambda m: m.group(0)),
)


def _shape(batch, channels, spatial, channels_last):
    return (batch, *spatial, channels) if channels_last else (batch, channels, *spatial)


def split_input_shape(op: str, shape, nd: int, channels_last: bool):
    """(batch, channels, spatial) of an input shape of ndim nd + 2."""
    if len(shape) != nd + 2:
        axes = names.AXES[nd]
        layout = ("N", *axes, "C") if channels_last else ("N", "C", *axes)
        raise ValueError(
            f"{op}: input must have {nd + 2} dims {tuple(a.upper() for a in layout)}, got shape {tuple(shape)}"
        )
    if channels_last:
        return shape[0], shape[-1], tuple(shape[1:-1])
    return shape[0], shape[1], tuple(shape[2:])


def resolve_conv(
    op: str,
    input_shape,
    weight_shape,
    *,
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
    output_padding=0,
    output_size=None,
    padding_mode="zeros",
    padding_value=0.0,
    has_bias=False,
    bias_shape=None,
    activation=None,
    channels_last=False,
    dtype="float32",
) -> ConvSpec:
    """Validate a conv or transposed-conv call's shapes and arguments; return its spec.

    ``op`` is ``conv1d``..``conv3d`` or ``conv_transpose1d``..``conv_transpose3d``.
    ``input_shape`` is batched (the caller adds the batch dim of unbatched input).
    """
    m = re.fullmatch(r"(conv|conv_transpose)([123])d", op)
    if not m:
        raise ValueError(f"resolve_conv: unknown op {op!r}")
    transposed, nd = m.group(1) == "conv_transpose", int(m.group(2))
    channels_last = check_flag(op, "channels_last", channels_last)
    batch, channels, in_size = split_input_shape(op, tuple(input_shape), nd, channels_last)
    weight_shape = tuple(weight_shape)
    if len(weight_shape) != nd + 2:
        expected = "(C_in, C_out/groups, *kernel)" if transposed else "(C_out, C_in/groups, *kernel)"
        raise ValueError(f"{op}: weight must have {nd + 2} dims {expected}, got shape {weight_shape}")
    if not is_int(groups):
        raise TypeError(f"{op}: groups must be an int, got {type(groups).__name__}")
    if groups < 1:
        raise ValueError(f"{op}: groups={groups} must be >= 1")
    if channels % groups:
        raise ValueError(f"{op}: input channels {channels} are not divisible by groups={groups}")
    kernel = weight_shape[2:]
    if any(k < 1 for k in kernel) or weight_shape[0] < 1 or weight_shape[1] < 1:
        raise ValueError(f"{op}: weight shape {weight_shape} has an empty dimension")
    if any(n < 1 for n in in_size):
        raise ValueError(f"{op}: input spatial size {in_size} has an empty dimension")
    if transposed:
        if weight_shape[0] != channels:
            raise ValueError(
                f"{op}: input has {channels} channels but weight expects {weight_shape[0]} "
                f"(weight.shape[0])"
            )
        out_channels = weight_shape[1] * groups
    else:
        if weight_shape[1] * groups != channels:
            raise ValueError(
                f"{op}: input has {channels} channels but weight expects "
                f"{weight_shape[1] * groups} (weight.shape[1]={weight_shape[1]} * groups={groups})"
            )
        out_channels = weight_shape[0]
        if out_channels % groups:
            raise ValueError(
                f"{op}: weight.shape[0]={out_channels} output channels are not divisible by groups={groups}"
            )
    stride = int_tuple(op, "stride", stride, nd)
    dilation = int_tuple(op, "dilation", dilation, nd)
    check_choice(op, "padding_mode", padding_mode, PADDING_MODES)
    padding_value = check_padding_value(op, padding_value)
    check_choice(op, "activation", activation, ACTIVATIONS)
    check_choice(op, "dtype", dtype, DTYPES)
    if bias_shape is not None:
        has_bias = True
        if tuple(bias_shape) != (out_channels,):
            raise ValueError(
                f"{op}: bias must have shape ({out_channels},) (one per output channel), "
                f"got {tuple(bias_shape)}"
            )
    if transposed:
        pads, out_size, output_padding = _transposed_geometry(
            op, padding, in_size, kernel, stride, dilation, output_padding, output_size
        )
    else:
        pads = resolve_pads(op, padding, in_size, kernel, stride, dilation)
        out_size = window_out_size(op, in_size, kernel, stride, dilation, pads)
        output_padding = ()
    return ConvSpec(
        transposed=transposed, nd=nd, batch=int(batch), in_channels=int(channels),
        out_channels=int(out_channels), groups=int(groups), in_size=tuple(map(int, in_size)),
        kernel=tuple(map(int, kernel)), stride=stride, dilation=dilation, pads=pads,
        out_size=out_size, output_padding=output_padding, padding_mode=padding_mode,
        padding_value=padding_value if padding_mode == "constant" else 0.0,
        has_bias=bool(has_bias), activation=activation,
        channels_last=bool(channels_last), dtype=dtype,
    )


def _transposed_geometry(op, padding, in_size, kernel, stride, dilation, output_padding, output_size):
    """Crops (begin, end) of the full transposed output, the output size and output_padding.

    "same" gives output in * stride (ONNX SAME_UPPER, output_padding included in the
    total); where that is longer than the full output (stride > dilated kernel), the
    extension is carried by output_padding, so every crop stays >= 0.
    """
    nd = len(in_size)
    full = tuple((n - 1) * s + d * (k - 1) + 1 for n, k, s, d in zip(in_size, kernel, stride, dilation))
    pads = padding_pairs(op, padding, nd)
    if output_size is not None:
        if output_padding not in (0, None) and any(int_tuple(op, "output_padding", output_padding, nd, minimum=0)):
            raise ValueError(f"{op}: give output_size or output_padding, not both")
        if pads == "same":
            raise ValueError(f"{op}: give output_size or padding='same', not both")
    output_padding = int_tuple(op, "output_padding", 0 if output_padding is None else output_padding, nd,
                               minimum=0)
    for axis, (p, s, d) in enumerate(zip(output_padding, stride, dilation)):
        if p >= max(s, d):
            raise ValueError(
                f"{op}: output_padding={p} in spatial dim {axis} must be smaller than "
                f"stride ({s}) or dilation ({d})"
            )
    if pads == "valid":
        pads = ((0, 0),) * nd
    elif pads == "full":
        pads = tuple((d * (k - 1), d * (k - 1)) for k, d in zip(kernel, dilation))
    elif pads == "same":
        same, extended = [], []
        for f, n, s, p in zip(full, in_size, stride, output_padding):
            total = f + p - n * s
            same.append((total // 2, total - total // 2) if total >= 0 else (0, 0))
            extended.append(p if total >= 0 else p - total)
        pads, output_padding = tuple(same), tuple(extended)
    base = tuple(f - b - e for f, (b, e) in zip(full, pads))
    if output_size is not None:
        if is_int(output_size):
            output_size = (output_size,) * nd
        output_size = int_tuple(op, "output_size", tuple(output_size)[-nd:], nd)
        output_padding = tuple(o - b for o, b in zip(output_size, base))
        for axis, (o, b, s, d) in enumerate(zip(output_size, base, stride, dilation)):
            if not b <= o < b + max(s, d):
                raise ValueError(
                    f"{op}: output_size {output_size} is not reachable in spatial dim {axis}: "
                    f"expected a size in [{b}, {b + max(s, d) - 1}]"
                )
    out_size = tuple(b + p for b, p in zip(base, output_padding))
    if any(o < 1 for o in out_size):
        raise ValueError(
            f"{op}: padding {pads} crops the whole output (full size {full}); output size would be {out_size}"
        )
    return pads, out_size, output_padding
