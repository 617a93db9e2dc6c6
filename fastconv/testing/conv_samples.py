"""Convolution samples shared by tests/ and bench/, registered as the conv family of the
op registry (fastconv.testing.registry).

A sample is a plain description (op, shapes, keyword arguments, dtype) that prints as
its ConvSpec name, so it serves as a pytest id. ``conv_samples()`` returns curated
cases plus a seeded draw from the cartesian product of the argument groups, sized by
FASTCONV_NUM_CASES (CI runs small, a deep run sets it large).

Tags say what a sample is, so tests select by tag: where it comes from (``curated``,
``drawn``, ``workload``), what its geometry has (``1d``/``2d``/``3d``, ``transposed``,
``strided``, ``dilated``, ``grouped``, ``depthwise``, ``pointwise``, ``padding_mode``,
``activation``, ``no_bias``, the dtype name), and what else a test should run it through
(``channels_last``: the layout test takes these).
"""

from __future__ import annotations

import itertools
import os
import random
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np

from .. import reference
from ..spec.conv import resolve_conv
from . import workloads
from .conv_errors import ERRORS
from .op_sample import op_sample
from .registry import OpInfo, register_op


@dataclass(frozen=True)
class ConvSample:
    op: str  # conv1d..conv3d, conv_transpose1d..conv_transpose3d
    input_shape: tuple  # channels-first
    weight_shape: tuple
    kwargs: tuple = ()  # sorted (name, value) pairs
    dtype: str = "float64"
    bias: bool = True
    tags: frozenset = field(default_factory=frozenset)

    @property
    def args(self) -> dict:
        return dict(self.kwargs)

    @property
    def nd(self) -> int:
        return len(self.input_shape) - 2

    @property
    def transposed(self) -> bool:
        return self.op.startswith("conv_transpose")

    def spec(self, channels_last=False):
        a = self.args
        shape = self.input_shape
        if channels_last:
            shape = (shape[0], *shape[2:], shape[1])
        keys = ("stride", "padding", "dilation", "groups", "padding_mode", "padding_value", "output_padding",
                "activation")
        return resolve_conv(self.op, shape, self.weight_shape, has_bias=self.bias, dtype=self.dtype,
                            channels_last=channels_last, **{k: a[k] for k in keys if k in a})

    def __str__(self) -> str:
        return self.spec().name()

    def arrays(self, rng: np.random.Generator):
        """Input, weight, bias in the sample's dtype: standard normals for every dtype.

        float16 samples are not made exact with small integers: the kernels sum in
        float32 and round the output once, an error of half a float16 ulp of the output
        (2**-11 relative), which the float16 tolerances (fastconv.testing.tolerances:
        5e-3, atol grown with the number of terms) cover with room; normals also reach
        the rounding that integers would hide."""
        dt = np.dtype(self.dtype)
        x = rng.standard_normal(self.input_shape).astype(dt)
        w = rng.standard_normal(self.weight_shape).astype(dt)
        out_channels = self.weight_shape[1] * self.args.get("groups", 1) if self.transposed else self.weight_shape[0]
        b = rng.standard_normal(out_channels).astype(dt) if self.bias else None
        return x, w, b


def sample(op, input_shape, weight_shape, dtype="float64", bias=True, tags=(), **kwargs) -> ConvSample:
    """A ConvSample carrying ``tags`` and the tags its arguments imply."""
    nd = len(input_shape) - 2
    implied = {f"{nd}d", dtype}
    for name, tag in (("stride", "strided"), ("dilation", "dilated")):
        if any(v != 1 for v in _per_dim(kwargs.get(name, 1), nd)):
            implied.add(tag)
    groups = kwargs.get("groups", 1)
    if groups > 1:
        implied.add("grouped")
    if groups == input_shape[1] > 1 and not op.startswith("conv_transpose"):
        implied.add("depthwise")
    if all(k == 1 for k in weight_shape[2:]):
        implied.add("pointwise")
    if kwargs.get("padding_mode", "zeros") != "zeros":
        implied.add("padding_mode")
    if kwargs.get("activation"):
        implied.add("activation")
    if op.startswith("conv_transpose"):
        implied.add("transposed")
    if not bias:
        implied.add("no_bias")
    return ConvSample(op, tuple(input_shape), tuple(weight_shape), tuple(sorted(kwargs.items())), dtype, bias,
                      frozenset(tags) | implied)


def _with_tag(samples, tag) -> list[ConvSample]:
    return [replace(s, tags=s.tags | {tag}) for s in samples]


def curated() -> list[ConvSample]:
    """Hand-picked cases: each names a corner that has broken kernels before."""
    return _with_tag(_curated() + depthwise_curated() + pointwise_curated() + dilated_curated(), "curated")


def _curated() -> list[ConvSample]:
    s = sample
    cl = {"channels_last"}  # also run channels-last by the layout test (tests/test_conv.py)
    return [
        s("conv2d", (2, 3, 7, 9), (4, 3, 3, 3), padding=1, tags=cl),
        s("conv2d", (1, 17, 7, 7), (5, 17, 3, 3), stride=2, padding=1, dtype="float32"),  # odd channels, stride tail
        s("conv2d", (2, 4, 9, 8), (6, 2, 3, 3), groups=2, dilation=2, padding=2),
        s("conv2d", (1, 6, 8, 8), (6, 1, 3, 3), groups=6, padding=1, tags={"depthwise", *cl}),
        s("conv2d", (2, 4, 9, 7), (12, 1, 3, 3), groups=4, stride=2, padding=((1, 2), (0, 1)),
          tags={"depthwise"}),  # channel multiplier 3, per-side pads
        s("conv2d", (1, 8, 6, 6), (4, 8, 1, 1), tags={"pointwise"}),
        s("conv2d", (1, 8, 7, 6), (4, 8, 1, 1), stride=2, tags={"pointwise", *cl}),
        s("conv2d", (2, 6, 5, 4), (4, 3, 1, 1), groups=2, activation="relu", tags={"pointwise"}),
        s("conv3d", (1, 5, 3, 4, 5), (7, 5, 1, 1, 1), stride=(1, 2, 1), dtype="float16", tags={"pointwise"}),
        s("conv2d", (1, 3, 5, 5), (2, 3, 5, 5), padding=1),  # kernel larger than the padding
        s("conv2d", (1, 2, 7, 9), (3, 2, 3, 2), stride=2, padding="same", tags=cl),
        s("conv2d", (1, 2, 6, 5), (3, 2, 2, 3), stride=(3, 2), padding="same"),  # even kernel, odd extra pad at end
        s("conv2d", (1, 2, 5, 6), (3, 2, 3, 3), padding="full", dilation=(1, 2)),
        s("conv2d", (1, 2, 6, 6), (3, 2, 3, 3), padding="valid", activation="relu", tags=cl),
        s("conv2d", (1, 2, 6, 6), (3, 2, 3, 3), padding=2, activation="relu6", dtype="float32"),
        s("conv2d", (1, 3, 4, 5), (2, 3, 3, 3), padding=6, padding_mode="reflect"),  # pad beyond the input
        s("conv2d", (1, 3, 4, 5), (2, 3, 3, 3), padding=(5, 7), padding_mode="circular", tags=cl),
        s("conv2d", (1, 3, 4, 5), (2, 3, 3, 3), padding=((3, 1), (0, 9)), padding_mode="symmetric"),
        s("conv2d", (1, 3, 4, 5), (2, 3, 3, 3), padding=3, padding_mode="replicate"),
        s("conv2d", (1, 3, 4, 5), (2, 3, 3, 3), padding=2, padding_mode="constant", padding_value=-1.5, tags=cl),
        s("conv2d", (2, 6, 9, 9), (4, 6, 3, 3), padding=1, dtype="float16"),
        s("conv1d", (2, 5, 17), (4, 5, 3), padding=((4, 0),), dilation=2),  # causal TCN
        s("conv1d", (1, 4, 31), (6, 2, 5), stride=3, groups=2, padding=2),
        s("conv1d", (1, 4, 9), (4, 1, 3), groups=4, padding="same", padding_mode="reflect", tags=cl),
        s("conv3d", (1, 3, 5, 6, 7), (4, 3, 3, 3, 3), padding=1),
        s("conv3d", (2, 4, 4, 5, 5), (4, 2, 2, 3, 3), stride=(1, 2, 2), groups=2, padding=((1, 0), (1, 1), (0, 2))),
        s("conv3d", (1, 4, 4, 5, 6), (4, 1, 3, 3, 3), groups=4, padding=1, padding_mode="circular",
          dtype="float32", tags=cl),  # shares its depthwise kernels with the 3-D one below; f64 lanes: the 2-D samples
        s("conv_transpose2d", (2, 4, 5, 6), (4, 3, 3, 3), stride=2, padding=1, output_padding=1),
        s("conv_transpose2d", (1, 6, 4, 4), (6, 2, 4, 4), stride=2, padding=1, groups=3),
        s("conv_transpose2d", (1, 4, 5, 5), (4, 2, 3, 3), stride=3, dilation=2, padding=((2, 0), (1, 3)), tags=cl),
        s("conv_transpose2d", (1, 3, 4, 5), (3, 2, 2, 2), stride=2, padding="same"),
        s("conv_transpose2d", (1, 3, 4, 5), (3, 2, 3, 3), stride=2, padding="same", output_padding=1),
        s("conv_transpose2d", (1, 3, 4, 5), (3, 2, 3, 3), padding="full", tags=cl),
        s("conv_transpose2d", (1, 3, 4, 4), (3, 2, 1, 1), stride=3, padding="same", activation="relu"),
        s("conv_transpose1d", (2, 3, 9), (3, 4, 5), stride=2, padding=2, output_padding=1),
        s("conv_transpose3d", (1, 4, 3, 4, 4), (4, 2, 2, 3, 3), stride=2, padding=1, dtype="float32"),
        s("conv_transpose2d", (2, 4, 5, 6), (4, 3, 3, 3), stride=2, padding=1, dtype="float16"),
        # phase decomposition corners: gcd(stride, dilation) > 1, dilation 3 with stride 2
        s("conv_transpose2d", (1, 4, 5, 4), (4, 3, 3, 3), stride=2, dilation=2, padding=1, output_padding=1),
        s("conv_transpose2d", (1, 3, 4, 5), (3, 2, 3, 2), stride=2, dilation=3, padding=((4, 1), (0, 2)),
          activation="relu6", dtype="float32"),
        s("conv_transpose2d", (2, 4, 6, 5), (4, 3, 2, 2), stride=2, groups=2, activation="relu6"),  # stacked phases
        s("conv_transpose2d", (1, 4, 3, 3), (4, 2, 2, 2), stride=2, activation="relu", dtype="float16"),
        s("conv_transpose2d", (1, 3, 5, 4), (3, 2, 3, 4), stride=(2, 3), padding=(4, 5)),  # crops > kernel - 1
        s("conv_transpose1d", (1, 2, 1), (2, 3, 2), stride=3),  # output shorter than the stride
        s("conv_transpose1d", (2, 4, 9), (4, 2, 3), padding=3, groups=2),  # stride 1, crop > kernel - 1
        s("conv_transpose3d", (1, 2, 3, 2, 3), (2, 4, 1, 2, 3), stride=(3, 2, 1), padding=(0, 1, 1),
          output_padding=(2, 1, 0), activation="relu", dtype="float32"),  # kernel 1 < stride 3: bias-only phases
        # phases run by the direct kernel, output written interleaved (conv/transpose/tiled.py): K a multiple of V
        s("conv_transpose2d", (2, 5, 4, 3), (5, 8, 4, 4), stride=2, padding=1),  # DCGAN: 2x2 windows, 4 offsets
        s("conv_transpose2d", (1, 6, 5, 4), (6, 8, 3, 3), stride=2, padding=1, output_padding=1, activation="relu6",
          dtype="float32"),  # FCN: 1, 2 and 4 taps per phase
        s("conv_transpose2d", (1, 3, 4, 3), (3, 8, 3, 1), stride=2, output_padding=1, activation="relu",
          dtype="float16"),  # kernel width 1 < stride: bias-only phases
        s("conv_transpose2d", (1, 4, 5, 4), (4, 8, 3, 3), stride=2, dilation=3, padding=((4, 1), (0, 2)),
          output_padding=(0, 1)),
        s("conv_transpose1d", (2, 4, 7), (4, 16, 5), stride=2, padding=2, output_padding=1, dtype="float32"),
        s("conv_transpose3d", (1, 3, 2, 3, 3), (3, 8, 2, 3, 3), stride=(1, 2, 2), padding=1, output_padding=(0, 1, 1)),
        # kernel == stride, 16+ channels: one GEMM, then a depth-to-space copy in channels-last
        s("conv_transpose2d", (1, 6, 3, 4), (6, 16, 2, 2), stride=2, activation="relu", dtype="float16"),
        s("conv_transpose3d", (1, 4, 2, 3, 2), (4, 16, 2, 3, 2), stride=(2, 3, 2)),
    ]


def depthwise_curated() -> list[ConvSample]:
    """Depthwise corners of the CPU kernels (fastconv/cpu/conv/depthwise/): maps narrower
    than their tiles, channels off the vector width, multipliers, strides, dilations, pads."""
    s = sample
    dw = {"depthwise"}
    return [
        s("conv2d", (1, 3, 13, 17), (3, 1, 3, 3), groups=3, padding=1, dtype="float32", tags=dw),
        s("conv2d", (2, 17, 2, 2), (17, 1, 3, 3), groups=17, stride=2, padding=1, activation="relu6",
          dtype="float32", tags=dw),
        s("conv2d", (1, 960, 7, 7), (960, 1, 3, 3), groups=960, padding=1, activation="relu6", dtype="float32",
          tags=dw),
        s("conv2d", (1, 8, 1, 1), (8, 1, 3, 3), groups=8, padding=1, dtype="float32", tags=dw),
        s("conv2d", (1, 20, 12, 40), (20, 1, 3, 3), groups=20, padding=1, dtype="float32", tags=dw),
        s("conv2d", (1, 5, 13, 11), (10, 1, 3, 3), groups=5, dilation=2, padding=2, tags=dw),  # M=2, dilated
        s("conv2d", (2, 16, 9, 9), (16, 1, 3, 3), groups=16, padding=1, activation="relu6", dtype="float16",
          tags=dw),
        s("conv2d", (1, 4, 2, 3), (4, 1, 5, 5), groups=4, padding=2, dtype="float32", tags=dw),  # no interior
        s("conv2d", (1, 6, 8, 9), (6, 1, 2, 4), groups=6, stride=2, padding="same", tags=dw),
        s("conv2d", (1, 7, 9, 10), (7, 1, 3, 3), groups=7, stride=(2, 1), dilation=(1, 2), padding=((0, 2), (3, 0)),
          dtype="float32", tags=dw),
        s("conv1d", (2, 6, 19), (12, 1, 5), groups=6, stride=2, padding=2, dtype="float32", tags=dw),
        s("conv3d", (1, 4, 5, 6, 7), (4, 1, 3, 3, 3), groups=4, stride=(1, 2, 1), padding=1, dtype="float32",
          tags=dw),
        s("conv2d", (1, 5, 6, 7), (5, 1, 3, 3), groups=5, padding=2, padding_mode="constant", padding_value=0.5,
          dtype="float32", tags=dw),
        s("conv2d", (1, 5, 6, 7), (15, 1, 3, 3), groups=5, padding=(1, 2), padding_mode="replicate",
          dtype="float32", tags=dw),  # M=3 on the padded path
        # channels-last interior rows (cpu/vector/depthwise_row.py): tiles of 8, 4, 2, 1 pixels, a masked
        # last channel vector, stride 2, dilation, 5x5 windows (4-pixel tiles), float64 lanes
        s("conv2d", (2, 37, 6, 17), (37, 1, 3, 3), groups=37, padding=1, activation="relu6", dtype="float32",
          tags=dw),
        s("conv2d", (1, 50, 9, 36), (50, 1, 3, 3), groups=50, stride=2, padding=1, dtype="float32", tags=dw),
        s("conv2d", (1, 19, 11, 23), (19, 1, 3, 3), groups=19, dilation=2, padding=1, activation="relu",
          dtype="float32", tags=dw),
        s("conv2d", (1, 21, 9, 20), (21, 1, 5, 5), groups=21, padding=2, dtype="float32", tags=dw),
        s("conv2d", (1, 11, 5, 19), (11, 1, 3, 3), groups=11, stride=(1, 2), padding=(0, 1), tags=dw),
        s("conv2d", (2, 24, 7, 15), (24, 1, 3, 3), groups=24, padding=1, activation="relu6", dtype="float16",
          tags=dw),
    ]


def pointwise_curated() -> list[ConvSample]:
    """1x1 corners of the direct kernel's in-place path (fastconv/cpu/conv/direct/pointwise.py)
    and of the GEMM: pixel counts off the tile widths, a last channel block of a few
    channels, strides (pixels C*stride apart channels-last), groups, one narrow vector,
    float64 lanes, float16, no bias, 1-D and 3-D, and the unit-stride GEMM's tasks."""
    s = sample
    pw = {"pointwise"}
    return [
        s("conv2d", (2, 37, 9, 11), (45, 37, 1, 1), activation="relu6", dtype="float32", tags=pw),
        s("conv2d", (1, 20, 7, 9), (66, 10, 1, 1), stride=(2, 3), groups=2, dtype="float32", tags=pw),
        s("conv2d", (1, 24, 15, 15), (144, 24, 1, 1), activation="relu", tags=pw),
        s("conv2d", (1, 40, 3, 5), (7, 40, 1, 1), dtype="float32", bias=False, tags=pw),
        s("conv1d", (2, 9, 31), (17, 9, 1), stride=2, activation="relu6", dtype="float16", tags=pw),
        s("conv3d", (1, 6, 3, 4, 5), (10, 6, 1, 1, 1), stride=(2, 1, 2), dtype="float32", tags=pw),
        # unit strides (conv/direct/pointwise_rows.py): fewer pixels than the widest tile, float16;
        # several runs of tiles by several passes of channel blocks, the last block partial
        s("conv2d", (1, 33, 2, 3), (40, 33, 1, 1), activation="relu", dtype="float16", tags=pw),
        s("conv2d", (2, 200, 5, 7), (70, 200, 1, 1), activation="relu6", dtype="float32", tags=pw),
        # a packed weight over pointwise_rows.PREPACK_BYTES (packed by each task), strided
        s("conv2d", (1, 512, 2, 5), (600, 512, 1, 1), stride=(1, 2), dtype="float32", tags=pw),
    ]


def dilated_curated() -> list[ConvSample]:
    """Zeros-padded dilated corners of the per-region tap GEMM ("taps", fastconv/cpu/conv/taps.py):
    pads beyond the dilated kernel's reach (outputs that read only padding), taps that read
    padding for every output, bands narrower than the merge threshold, strides, groups,
    per-side pads, even kernels, 1-D and 3-D, float16/32/64, bias+relu/relu6."""
    s = sample
    return [
        s("conv2d", (1, 6, 9, 11), (5, 6, 3, 3), dilation=4, padding=9, activation="relu6", dtype="float32"),
        s("conv2d", (1, 3, 5, 6), (4, 3, 3, 3), dilation=7, padding=7),  # taps 0 and 2 read padding everywhere
        s("conv2d", (2, 5, 13, 10), (4, 5, 3, 3), stride=2, dilation=6, padding=6, activation="relu",
          dtype="float32"),
        s("conv2d", (1, 6, 10, 9), (6, 2, 3, 3), groups=3, dilation=3, padding=3),
        s("conv2d", (1, 7, 11, 13), (5, 7, 2, 3), dilation=(5, 3), padding=((6, 1), (0, 7)), dtype="float32"),
        s("conv1d", (2, 5, 23), (6, 5, 3), dilation=8, padding=((16, 0),), dtype="float16"),  # causal
        s("conv3d", (1, 4, 5, 6, 7), (3, 4, 3, 3, 3), stride=(1, 2, 1), dilation=(2, 3, 2), padding=(2, 3, 4)),
    ]


_GROUPS = {
    "geometry": [dict(stride=1, padding=0), dict(stride=2, padding=1), dict(stride=(1, 2), padding=((2, 0), (1, 1))),
                 dict(stride=2, padding="same"), dict(stride=1, padding="full")],
    "dilation": [1, 2],
    "channels": [(3, 5, 1), (4, 4, 2), (6, 6, 6), (7, 7, 1)],  # (C, K, groups)
    "mode": ["zeros", "reflect", "replicate", "circular", "symmetric"],
    "dtype": ["float32", "float64"],
}


def drawn(count: int, seed: int = 0) -> list[ConvSample]:
    """``count`` cases drawn with a fixed seed from the product of the argument groups (2-D)."""
    combos = list(itertools.product(*_GROUPS.values()))
    random.Random(seed).shuffle(combos)
    out = []
    for geometry, dilation, (c, k, g), mode, dtype in combos[:count]:
        out.append(sample("conv2d", (2, c, 9, 8), (k, c // g, 3, 3), dtype=dtype, dilation=dilation, groups=g,
                          padding_mode=mode, tags={"drawn"}, **geometry))
    return out


def workload_layers(suite: str, scale_channels: int = 8, scale_spatial: int = 4) -> list[ConvSample]:
    """Real layers of a workload suite, shrunk (channels / scale, spatial / scale) for tests."""
    layers = workloads.layers(suite)
    out = []
    for layer in layers:
        if not layer["op"].startswith("conv"):
            continue
        n, c, *sp = layer["input"]
        w = list(layer["weight"])
        g = layer.get("groups", 1)
        cs = max(1, c // scale_channels)
        if g == c:
            g = cs
        elif g > 1:
            g = max(1, g // scale_channels)
        cs = max(cs - cs % g, g)
        sp = [max(s // scale_spatial, 1) for s in sp]
        if layer["op"].startswith("conv_transpose"):
            w = [cs, max(1, w[1] // scale_channels), *w[2:]]
        else:
            w = [max(g, w[0] // scale_channels // g * g), cs // g, *w[2:]]
        kwargs = {k: layer[k] for k in ("stride", "padding", "dilation", "output_padding") if k in layer}
        if isinstance(kwargs.get("padding"), list):
            kwargs["padding"] = tuple(tuple(p) for p in kwargs["padding"])
        extent = [d * (k - 1) + 1 for d, k in zip(_per_dim(kwargs.get("dilation", 1), len(sp)), w[2:])]
        sp = [max(s, e) for s, e in zip(sp, extent)]
        out.append(sample(layer["op"], (min(n, 2), cs, *sp), w, dtype="float32", groups=g,
                          tags={f"{suite}:{layer['name']}", "workload"}, **kwargs))
    return out


def _per_dim(value, nd):
    return (value,) * nd if isinstance(value, int) else tuple(value)


def conv_samples(seed: int = 0) -> list[ConvSample]:
    """The curated cases and FASTCONV_NUM_CASES (24 by default) drawn ones: every ConvSample
    the registry holds (workload layers are built on request, by ``workload_layers``)."""
    budget = int(os.environ.get("FASTCONV_NUM_CASES", "24"))
    return curated() + drawn(budget, seed)


def conv_op_samples() -> list:
    """The conv ops as OpSamples (one each, float32, tagged ``every_op``), for tests over every op."""
    s = op_sample
    geo = ("stride", "padding", "dilation")
    return [
        s("conv1d", (1, 2, 9), (3, 2, 3), (3,), padding=1, geometry=geo, huge=(("padding", 10**9),),
          tags={"conv"}),
        s("conv2d", (1, 2, 9, 9), (3, 2, 3, 3), (3,), padding=1, geometry=geo, huge=(("padding", 10**6),),
          tags={"conv"}),
        s("conv3d", (1, 1, 4, 5, 5), (2, 1, 3, 3, 3), padding=1, geometry=geo, huge=(("padding", 10**5),),
          tags={"conv"}),
        s("conv_transpose2d", (1, 2, 9, 9), (2, 3, 3, 3), stride=2, padding=1, geometry=("stride", "padding"),
          huge=(("stride", 10**6),), tags={"conv", "transposed"}),
        s("conv_transpose1d", (1, 2, 9), (2, 3, 4), stride=2, geometry=("stride", "padding", "dilation"),
          huge=(("stride", 10**9),), tags={"conv", "transposed"}),
        s("depthwise_conv2d", (1, 3, 8, 8), (3, 1, 3, 3), padding=1, geometry=geo, huge=(("padding", 10**6),),
          tags={"conv", "depthwise"}),
        s("pointwise_conv2d", (1, 4, 5, 5), (3, 4, 1, 1), tags={"conv", "pointwise"}),
    ]


CONV_OPS = ("conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
            "depthwise_conv2d", "pointwise_conv2d")


def _op_samples(op: str) -> list:
    return [s for s in conv_samples() + conv_op_samples() if s.op == op]


def _op_errors(op: str) -> list:
    return [e for e in ERRORS if e.op == op]


for _op in CONV_OPS:
    register_op(OpInfo(
        _op, "conv", samples=partial(_op_samples, _op), error_inputs=partial(_op_errors, _op),
        reference={"depthwise_conv2d": reference.depthwise_conv, "pointwise_conv2d": reference.pointwise_conv}.get(
            _op, reference.conv_transpose if _op.startswith("conv_transpose") else reference.conv),
    ))
