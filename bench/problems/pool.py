"""Pooling problems: window pooling (``PoolSpec``), adaptive pooling (``AdaptivePoolSpec``)
and the two ops built on adaptive pooling, global pooling and spatial pyramid pooling."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from fastconv.spec import AdaptivePoolSpec, PoolSpec, names

from .base import Problem, Unsupported, with_layout
from .calls import auto_algo, pads_arg, torch_layout_ok


class _PoolCallMixin:
    """The pooling ops take no ``algo=``: each problem is timed as the op runs it ("auto"),
    and the record names the algorithm it chose."""

    family = "pool"

    def _fastconv_op(self):
        import fastconv

        return getattr(fastconv, self.op)

    def algorithms(self, layout):
        return ["auto"]

    def auto_label(self, layout) -> str | None:
        return auto_algo(self.family, self.spec_for(layout))


@dataclass(frozen=True)
class PoolProblem(_PoolCallMixin, Problem):
    spec: PoolSpec
    kind = "pool"

    @property
    def op(self):
        return self.spec.op

    def name(self):
        return self.spec.name()

    def _facts(self):
        s = self.spec
        return {"role": f"{s.mode}_pool", "channels": s.channels, "in_size": list(s.in_size),
                "out_size": list(s.out_size), "kernel": list(s.kernel), "stride": list(s.stride)}

    def fastconv_fn(self, algo, layout):
        s = self.spec
        f = self._fastconv_op()
        kw = dict(channels_last=layout == "nhwc")
        pads = pads_arg(s.pads)
        if s.mode == "max":
            def run(x):
                return f(x, s.kernel, s.stride, pads, s.dilation, s.ceil_mode, **kw)
        elif s.mode == "avg":
            if any(d != 1 for d in s.dilation):
                kw["dilation"] = s.dilation

            def run(x):
                return f(x, s.kernel, s.stride, pads, s.ceil_mode, s.count_include_pad,
                         s.divisor_override, **kw)
        else:
            if any(p != (0, 0) for p in s.pads):
                kw["padding"] = pads

            def run(x):
                return f(x, s.norm_type, s.kernel, s.stride, s.ceil_mode, **kw)
        return run

    def torch_fn(self, layout):
        import torch.nn.functional as TF

        s = self.spec
        torch_layout_ok(s.nd, layout)
        if any(b != e for b, e in s.pads):
            raise Unsupported("PyTorch pooling has no per-side padding")
        pads = tuple(b for b, _ in s.pads)
        if any(2 * p > k for p, k in zip(pads, s.kernel)):
            raise Unsupported("PyTorch pooling needs padding <= kernel_size / 2")
        f = getattr(TF, s.op)
        if s.mode == "max":
            def run(x):
                return f(x, s.kernel, s.stride, pads, s.dilation, s.ceil_mode)
        elif s.mode == "avg":
            if any(d != 1 for d in s.dilation):
                raise Unsupported("PyTorch avg_pool has no dilation")

            def run(x):
                return f(x, s.kernel, s.stride, pads, s.ceil_mode, s.count_include_pad, s.divisor_override)
        else:
            if any(pads) or any(d != 1 for d in s.dilation):
                raise Unsupported("PyTorch lp_pool has no padding or dilation")

            def run(x):
                return f(x, s.norm_type, s.kernel, s.stride, s.ceil_mode)
        return run


@dataclass(frozen=True)
class AdaptivePoolProblem(_PoolCallMixin, Problem):
    spec: AdaptivePoolSpec
    kind = "adaptive_pool"
    family = "adaptive_pool"

    @property
    def op(self):
        return self.spec.op

    def name(self):
        return self.spec.name()

    def _facts(self):
        s = self.spec
        return {"role": f"adaptive_{s.mode}_pool", "channels": s.channels, "in_size": list(s.in_size),
                "out_size": list(s.out_size)}

    def fastconv_fn(self, algo, layout):
        s = self.spec
        f = self._fastconv_op()
        kw = dict(channels_last=layout == "nhwc")

        def run(x):
            return f(x, s.out_size, **kw)
        return run

    def torch_fn(self, layout):
        import torch.nn.functional as TF

        torch_layout_ok(self.spec.nd, layout)
        f = getattr(TF, self.spec.op)
        out = self.spec.out_size

        def run(x):
            return f(x, out)
        return run


@dataclass(frozen=True)
class GlobalPoolProblem(_PoolCallMixin, Problem):
    """``global_avg_pool`` / ``global_max_pool``: an adaptive pool to size 1, kept (N, C, 1, ...)."""

    spec: AdaptivePoolSpec
    kind = "global_pool"
    family = "adaptive_pool"

    @property
    def op(self):
        return f"global_{self.spec.mode}_pool"

    def name(self):
        s = self.spec
        parts = [f"global_{s.mode}_pool{s.nd}d", f"mb{s.batch}", f"c{s.channels}", names.sizes("i", s.in_size)]
        return "_".join(parts + names.layout_dtype(False, s.dtype))

    def _facts(self):
        s = self.spec
        return {"role": f"global_{s.mode}_pool", "channels": s.channels, "in_size": list(s.in_size),
                "out_size": list(s.out_size)}

    def fastconv_fn(self, algo, layout):
        f = self._fastconv_op()
        kw = dict(channels_last=layout == "nhwc")

        def run(x):
            return f(x, **kw)
        return run

    def torch_fn(self, layout):
        import torch.nn.functional as TF

        torch_layout_ok(self.spec.nd, layout)
        f = getattr(TF, f"adaptive_{self.spec.mode}_pool{self.spec.nd}d")

        def run(x):
            return f(x, 1)
        return run

    def torch_note(self, layout):
        return f"F.adaptive_{self.spec.mode}_pool{self.spec.nd}d(x, 1)"


@dataclass(frozen=True)
class PyramidPoolProblem(_PoolCallMixin, Problem):
    """``spatial_pyramid_pool``: adaptive pools at ``levels``, flattened and concatenated."""

    spec: AdaptivePoolSpec  # the first level; the others differ only in out_size
    levels: tuple
    kind = "pyramid_pool"
    family = "adaptive_pool"
    op = "spatial_pyramid_pool"

    @property
    def specs(self):
        return tuple(replace(self.spec, out_size=(lv,) * self.spec.nd) for lv in self.levels)

    @property
    def min_bytes(self) -> int:
        """Input read once, every level's output written."""
        s = self.spec
        outs = sum(lv ** s.nd for lv in self.levels) * s.batch * s.channels
        return (math.prod(s.input_shape) + outs) * np.dtype(s.dtype).itemsize

    def name(self):
        s = self.spec
        parts = [f"spatial_pyramid_pool{s.nd}d", f"mb{s.batch}", f"c{s.channels}", names.sizes("i", s.in_size),
                 "l" + ".".join(str(lv) for lv in self.levels)]
        if s.mode != "max":
            parts.append(s.mode)
        return "_".join(parts + names.layout_dtype(False, s.dtype))

    def _facts(self):
        s = self.spec
        return {"role": f"pyramid_{s.mode}_pool", "channels": s.channels, "in_size": list(s.in_size),
                "levels": list(self.levels)}

    def auto_label(self, layout):
        return auto_algo(self.family, with_layout(self.specs[-1], layout))

    def fastconv_fn(self, algo, layout):
        f = self._fastconv_op()
        kw = dict(channels_last=layout == "nhwc")
        levels, mode = self.levels, self.spec.mode

        def run(x):
            return f(x, levels, mode, **kw)
        return run

    def torch_fn(self, layout):
        import torch
        import torch.nn.functional as TF

        torch_layout_ok(self.spec.nd, layout)
        f = getattr(TF, f"adaptive_{self.spec.mode}_pool{self.spec.nd}d")
        levels = self.levels

        def run(x):
            return torch.cat([f(x, lv).flatten(1) for lv in levels], 1)
        return run

    def torch_note(self, layout):
        return "torch.cat of F.adaptive_*_pool per level, flattened"

    def output_nchw(self, result, layout, library):
        # (N, C * sum(l*l)): compared order-insensitively (the concatenation order is the op's)
        if library == "torch":
            return result.detach().contiguous().numpy().astype(np.float64)
        return np.asarray(result, dtype=np.float64).reshape(self.spec.batch, -1)

    def check_order_insensitive(self) -> bool:
        return True
