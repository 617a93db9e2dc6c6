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
    int_tuple,
    is_int,
    padding_pairs,
    resolve_pads,
    window_out_size,
)

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
        axes = _AXES[self.nd]
        parts = [self.op, f"mb{self.batch}", f"g{self.groups}ic{self.in_channels}oc{self.out_channels}"]
        parts.append("".join(f"i{a}{n}" for a, n in zip(axes, self.in_size)))
        parts.append("".join(f"k{a}{n}" for a, n in zip(axes, self.kernel)))
        if any(s != 1 for s in self.stride):
            parts.append("s" + "".join(f"{a}{n}" for a, n in zip(axes, self.stride)))
        if any(d != 1 for d in self.dilation):
            parts.append("d" + "".join(f"{a}{n}" for a, n in zip(axes, self.dilation)))
        if any(p != (0, 0) for p in self.pads):
            parts.append(
                "p" + "".join(
                    f"{a}{b}" if b == e else f"{a}{b}.{e}" for a, (b, e) in zip(axes, self.pads)
                )
            )
        if self.transposed and any(self.output_padding):
            parts.append("op" + "".join(f"{a}{n}" for a, n in zip(axes, self.output_padding)))
        if self.padding_mode != "zeros":
            mode = self.padding_mode
            if mode == "constant":
                mode += f"{self.padding_value!r}"
            parts.append(f"pm{mode}")
        if self.has_bias:
            parts.append("bias")
        if self.activation:
            parts.append(self.activation)
        if self.channels_last:
            parts.append("nhwc")
        if self.dtype != "float32":
            parts.append({"float16": "f16", "float64": "f64"}[self.dtype])
        return "_".join(parts)

    __str__ = name

    @classmethod
    def parse(cls, text: str) -> ConvSpec:
        """Read back a string made by :meth:`name`; sizes left out take defaults."""
        m = re.fullmatch(r"conv(_transpose)?([123])d_(.*)", text)
        if not m:
            raise ValueError(f"ConvSpec.parse: {text!r} does not start with conv<N>d_ or conv_transpose<N>d_")
        transposed, nd, rest = bool(m.group(1)), int(m.group(2)), m.group(3)
        axes = _AXES[nd]
        fields = {"mb": 1, "stride": (1,) * nd, "dilation": (1,) * nd, "pads": ((0, 0),) * nd,
                  "output_padding": (0,) * nd, "mode": "zeros", "value": 0.0, "bias": False,
                  "activation": None, "channels_last": False, "dtype": "float32"}
        for token in rest.split("_"):
            if m := re.fullmatch(r"mb(\d+)", token):
                fields["mb"] = int(m.group(1))
            elif m := re.fullmatch(r"g(\d+)ic(\d+)oc(\d+)", token):
                fields["g"], fields["ic"], fields["oc"] = map(int, m.groups())
            elif token.startswith("i") and not token.startswith("ic"):
                fields["in"] = _axis_values(token, "i", axes, text)
            elif token.startswith("k"):
                fields["kernel"] = _axis_values(token, "k", axes, text)
            elif token.startswith("op"):
                fields["output_padding"] = _axis_values(token[2:], "", axes, text)
            elif token.startswith("pm"):
                mode = token[2:]
                if mode.startswith("constant"):
                    fields["value"] = float(mode[len("constant"):] or 0.0)
                    mode = "constant"
                fields["mode"] = mode
            elif token.startswith("s"):
                fields["stride"] = _axis_values(token[1:], "", axes, text)
            elif token.startswith("d"):
                fields["dilation"] = _axis_values(token[1:], "", axes, text)
            elif token.startswith("p"):
                pads = []
                for a in axes:
                    pm = re.search(rf"{a}(\d+)(?:\.(\d+))?", token[1:])
                    if not pm:
                        raise ValueError(f"ConvSpec.parse: {text!r}: padding token {token!r} lacks axis {a}")
                    b = int(pm.group(1))
                    pads.append((b, int(pm.group(2)) if pm.group(2) else b))
                fields["pads"] = tuple(pads)
            elif token == "bias":
                fields["bias"] = True
            elif token in ("relu", "relu6"):
                fields["activation"] = token
            elif token == "nhwc":
                fields["channels_last"] = True
            elif token in ("f16", "f64"):
                fields["dtype"] = {"f16": "float16", "f64": "float64"}[token]
            else:
                raise ValueError(f"ConvSpec.parse: {text!r}: unknown token {token!r}")
        for key in ("g", "in", "kernel"):
            if key not in fields:
                raise ValueError(f"ConvSpec.parse: {text!r} lacks its {'g<G>ic<C>oc<K>' if key == 'g' else key} part")
        weight = (
            (fields["ic"], fields["oc"] // fields["g"], *fields["kernel"])
            if transposed
            else (fields["oc"], fields["ic"] // fields["g"], *fields["kernel"])
        )
        return resolve_conv(
            ("conv_transpose" if transposed else "conv") + f"{nd}d",
            _shape(fields["mb"], fields["ic"], fields["in"], fields["channels_last"]),
            weight,
            stride=fields["stride"], padding=fields["pads"], dilation=fields["dilation"],
            groups=fields["g"], output_padding=fields["output_padding"],
            padding_mode=fields["mode"], padding_value=fields["value"], has_bias=fields["bias"],
            activation=fields["activation"], channels_last=fields["channels_last"],
            dtype=fields["dtype"],
        )


_AXES = {1: ("w",), 2: ("h", "w"), 3: ("d", "h", "w")}


def _axis_values(token: str, prefix: str, axes, text) -> tuple:
    values = []
    for a in axes:
        m = re.search(rf"{prefix}{a}(\d+)", token)
        if not m:
            raise ValueError(f"ConvSpec.parse: {text!r}: token {token!r} lacks axis {a}")
        values.append(int(m.group(1)))
    return tuple(values)


def _shape(batch, channels, spatial, channels_last):
    return (batch, *spatial, channels) if channels_last else (batch, channels, *spatial)


def split_input_shape(op: str, shape, nd: int, channels_last: bool):
    """(batch, channels, spatial) of an input shape of ndim nd + 2."""
    if len(shape) != nd + 2:
        layout = ("N", *_AXES[nd], "C") if channels_last else ("N", "C", *_AXES[nd])
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
        padding_value=float(padding_value), has_bias=bool(has_bias), activation=activation,
        channels_last=bool(channels_last), dtype=dtype,
    )


def _transposed_geometry(op, padding, in_size, kernel, stride, dilation, output_padding, output_size):
    """Crops (begin, end) of the full transposed output, the output size and output_padding.

    A negative end crop (possible with "same" when stride > kernel extent) extends the
    output with positions that receive no contribution, as output_padding does.
    """
    nd = len(in_size)
    full = tuple((n - 1) * s + d * (k - 1) + 1 for n, k, s, d in zip(in_size, kernel, stride, dilation))
    pads = padding_pairs(op, padding, nd)
    if pads == "valid":
        pads = ((0, 0),) * nd
    elif pads == "full":
        pads = tuple((d * (k - 1), d * (k - 1)) for k, d in zip(kernel, dilation))
    elif pads == "same":
        same = []
        for f, n, s in zip(full, in_size, stride):
            total = f - n * s
            same.append((total // 2, total - total // 2) if total >= 0 else (0, total))
        pads = tuple(same)
    base = tuple(f - b - e for f, (b, e) in zip(full, pads))
    if output_size is not None:
        if output_padding not in (0, None) and any(int_tuple(op, "output_padding", output_padding, nd, minimum=0)):
            raise ValueError(f"{op}: give output_size or output_padding, not both")
        if is_int(output_size):
            output_size = (output_size,) * nd
        output_size = tuple(output_size)[-nd:]
        output_size = int_tuple(op, "output_size", output_size, nd)
        output_padding = tuple(o - b for o, b in zip(output_size, base))
        for axis, (o, b, s, d) in enumerate(zip(output_size, base, stride, dilation)):
            if not b <= o < b + max(s, d):
                raise ValueError(
                    f"{op}: output_size {output_size} is not reachable in spatial dim {axis}: "
                    f"expected a size in [{b}, {b + max(s, d) - 1}]"
                )
    else:
        output_padding = int_tuple(op, "output_padding", output_padding, nd, minimum=0)
        for axis, (p, s, d) in enumerate(zip(output_padding, stride, dilation)):
            if p >= max(s, d):
                raise ValueError(
                    f"{op}: output_padding={p} in spatial dim {axis} must be smaller than "
                    f"stride ({s}) or dilation ({d})"
                )
    out_size = tuple(b + p for b, p in zip(base, output_padding))
    if any(o < 1 for o in out_size):
        raise ValueError(
            f"{op}: padding {pads} crops the whole output (full size {full}); output size would be {out_size}"
        )
    return pads, out_size, output_padding
