"""Pooling, window and separable samples shared by tests (the conv ones are in
conv_samples.py).

An :class:`OpSample` is one call of a public op: its name, the shapes of its array
arguments (the first is the input), its other arguments and tags. Tests that hold for
every op (ndarray subclasses, extreme integers, huge outputs) take their cases from
:func:`op_samples`, so a sample added here reaches all of them. ``geometry`` names the
integer arguments that size windows and outputs (what extreme-integer and huge-output
tests vary); ``huge`` is an argument change whose output cannot be allocated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class OpSample:
    op: str
    shapes: tuple  # shapes of the array arguments, input first
    kwargs: tuple = ()  # sorted (name, value) pairs
    dtype: str = "float32"
    geometry: tuple = ()  # names of integer geometry arguments in kwargs
    huge: tuple = ()  # (name, value) pairs giving an output of several GiB (at least 8)
    tags: frozenset = field(default_factory=frozenset)

    @property
    def args(self) -> dict:
        return dict(self.kwargs)

    def __str__(self) -> str:
        shape = "x".join(map(str, self.shapes[0]))
        extra = "_".join(f"{k}{v}" for k, v in self.kwargs).replace(" ", "")
        return f"{self.op}_{shape}" + (f"_{extra}" if extra else "")

    def arrays(self, rng: np.random.Generator) -> list:
        """The array arguments: normals in the sample's dtype (int64 indices for max_unpool,
        from a max pooling of the input so they are valid)."""
        dt = np.dtype(self.dtype)
        return [rng.standard_normal(s).astype(dt) for s in self.shapes]

    def call(self, fastconv, arrays, **changes):
        """Run the sample through ``fastconv`` (the module) on ``arrays``, with ``changes``
        to its keyword arguments."""
        kwargs = {**self.args, **changes}
        if self.op.startswith("max_unpool"):
            nd = int(self.op[-2])
            pool = getattr(fastconv, f"max_pool{nd}d")
            values, indices = pool(arrays[0], kwargs["kernel_size"], return_indices=True)
            return getattr(fastconv, self.op)(values, indices, **kwargs)
        return getattr(fastconv, self.op)(*arrays, **kwargs)


def op_sample(op, *shapes, dtype="float32", geometry=(), huge=(), tags=(), **kwargs) -> OpSample:
    return OpSample(op, tuple(map(tuple, shapes)), tuple(sorted(kwargs.items())), dtype, tuple(geometry),
                    tuple(huge), frozenset(tags))


def pool_samples() -> list[OpSample]:
    """One small call of each pooling op, tagged by kind."""
    s = op_sample
    win = ("kernel_size", "stride", "padding")
    return [
        s("max_pool1d", (2, 3, 9), kernel_size=3, stride=2, padding=1, geometry=win + ("dilation",),
          huge=(("padding", 10**9), ("kernel_size", 1), ("stride", 1)), tags={"pool", "max"}),
        s("max_pool2d", (1, 2, 7, 6), kernel_size=2, stride=2, geometry=win + ("dilation",),
          huge=(("padding", 10**6), ("kernel_size", 1), ("stride", 1)), tags={"pool", "max"}),
        s("max_pool3d", (1, 2, 4, 5, 3), kernel_size=2, stride=1, padding=1, geometry=win,
          huge=(("padding", 10**5),), tags={"pool", "max"}),
        s("avg_pool2d", (2, 3, 6, 7), kernel_size=3, stride=2, padding=1, geometry=win + ("dilation",),
          huge=(("padding", 10**6), ("kernel_size", 1), ("stride", 1)), tags={"pool", "avg"}),
        s("avg_pool1d", (1, 2, 8), kernel_size=2, geometry=win,
          huge=(("padding", 10**9), ("kernel_size", 1), ("stride", 1)), tags={"pool", "avg"}),
        s("lp_pool2d", (1, 2, 6, 6), norm_type=2.0, kernel_size=2, geometry=("kernel_size", "stride"),
          tags={"pool", "lp"}),
        s("adaptive_avg_pool2d", (1, 3, 7, 5), output_size=(3, 2), geometry=("output_size",),
          huge=(("output_size", 10**6),), tags={"pool", "adaptive"}),
        s("adaptive_max_pool1d", (2, 2, 9), output_size=4, return_indices=True, geometry=("output_size",),
          huge=(("output_size", 2 * 10**9),), tags={"pool", "adaptive"}),
        s("global_avg_pool", (1, 3, 4, 5), tags={"pool", "global"}),
        s("spatial_pyramid_pool", (1, 2, 8, 8), levels=(1, 2), tags={"pool", "pyramid"}),
    ]


def window_samples() -> list[OpSample]:
    """One small call of each window op and of separable_conv2d, tagged by kind."""
    s = op_sample
    return [
        s("unfold", (1, 2, 5, 6), kernel_size=(2, 3), stride=1, padding=1,
          geometry=("kernel_size", "stride", "padding"), huge=(("padding", 10**5),), tags={"window"}),
        s("fold", (1, 2 * 4, 12), output_size=(4, 5), kernel_size=2, stride=1,
          geometry=("kernel_size", "stride"), tags={"window"}),
        s("max_unpool2d", (1, 2, 6, 6), kernel_size=2, geometry=("kernel_size",), tags={"window"}),
        s("fractional_max_pool2d", (1, 2, 9, 9), kernel_size=2, output_size=4, seed=0, tags={"window"}),
        s("separable_conv2d", (1, 7, 7, 4), (4, 1, 3, 3), (6, 4, 1, 1), padding=1, algo="fused",
          channels_last=True, geometry=("stride", "padding", "dilation"), huge=(("padding", 10**5),),
          tags={"separable"}),
        s("separable_conv2d", (1, 4, 7, 7), (4, 1, 3, 3), (6, 4, 1, 1), padding=1, algo="composed",
          geometry=("stride", "padding", "dilation"), huge=(("padding", 10**5),), tags={"separable"}),
    ]


def conv_op_samples() -> list[OpSample]:
    """The conv ops as OpSamples (one each, float32), for tests over every op."""
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
    ]


def op_samples() -> list[OpSample]:
    """Every op family: conv, pooling, windows, separable."""
    return conv_op_samples() + pool_samples() + window_samples()
