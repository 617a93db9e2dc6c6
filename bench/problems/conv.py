"""Convolution problems: one ``ConvSpec`` (conv, transposed, depthwise, pointwise), or
a depthwise ``ConvSpec`` then a pointwise one (``separable_conv2d``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from fastconv.spec import ConvSpec, SeparablePair

from .base import Problem, Unsupported, with_layout
from .calls import auto_algo, capable_algos, pads_arg, torch_layout_ok, torch_pad


@dataclass(frozen=True)
class ConvProblem(Problem):
    spec: ConvSpec
    kind = "conv"

    @property
    def op(self) -> str:
        return self.spec.op

    def name(self) -> str:
        return self.spec.name()

    def _facts(self) -> dict:
        s = self.spec
        role = ("transposed" if s.transposed else "depthwise" if s.is_depthwise
                else "pointwise" if s.is_pointwise and s.groups == 1 else "grouped" if s.groups > 1
                else "standard")
        return {"role": role, "groups": s.groups, "in_channels": s.in_channels,
                "out_channels": s.out_channels, "in_size": list(s.in_size), "out_size": list(s.out_size),
                "kernel": list(s.kernel), "stride": list(s.stride)}

    def array_shapes(self, layout):
        spec = self.spec_for(layout)
        return [tuple(spec.input_shape), tuple(spec.weight_shape)]

    def algorithms(self, layout):
        return capable_algos("conv_transpose" if self.spec.transposed else "conv", self.spec_for(layout))

    def auto_algorithm(self, layout):
        return auto_algo("conv_transpose" if self.spec.transposed else "conv", self.spec_for(layout))

    def fastconv_fn(self, algo, layout):
        import fastconv

        s = self.spec
        f = getattr(fastconv, s.op)
        cl = layout == "nhwc"
        pads = pads_arg(s.pads)
        if s.transposed:
            def run(x, w):
                return f(x, w, None, s.stride, pads, s.output_padding, s.groups, s.dilation,
                         algo=algo, channels_last=cl)
        else:
            kw = {}
            if s.padding_mode != "zeros":
                kw = {"padding_mode": s.padding_mode, "padding_value": s.padding_value}

            def run(x, w):
                return f(x, w, None, s.stride, pads, s.dilation, s.groups, algo=algo, channels_last=cl, **kw)
        return run

    def torch_fn(self, layout):
        import torch.nn.functional as TF

        s = self.spec
        torch_layout_ok(s.nd, layout)
        if s.padding_mode != "zeros":
            raise Unsupported(f"padding_mode={s.padding_mode!r} is not run on PyTorch by the harness")
        if s.transposed:
            if any(b != e for b, e in s.pads):
                raise Unsupported("PyTorch's conv_transpose has no per-side padding")
            f = getattr(TF, s.op)
            pads = tuple(b for b, _ in s.pads)

            def run(x, w):
                return f(x, w, None, s.stride, pads, s.output_padding, s.groups, s.dilation)
            return run
        f = getattr(TF, s.op)
        if all(b == e for b, e in s.pads):
            pads = tuple(b for b, _ in s.pads)

            def run(x, w):
                return f(x, w, None, s.stride, pads, s.dilation, s.groups)
        else:
            widths = torch_pad(s.pads)

            def run(x, w):
                return f(TF.pad(x, widths), w, None, s.stride, 0, s.dilation, s.groups)
        return run

    def torch_note(self, layout):
        if not self.spec.transposed and any(b != e for b, e in self.spec.pads):
            return "F.pad then conv (PyTorch has no per-side conv padding)"
        return ""


@dataclass(frozen=True)
class SeparableProblem(Problem):
    """Depthwise k x k (channel multiplier M) then pointwise 1x1: ``separable_conv2d``."""

    spec: ConvSpec  # the depthwise part
    pointwise: ConvSpec
    kind = "separable"
    op = "separable_conv2d"

    @property
    def specs(self):
        return (self.spec, self.pointwise)

    @property
    def min_bytes(self) -> int:
        """Input, both weights and the output: the intermediate map need not leave cache."""
        middle = math.prod(self.spec.output_shape) * self.spec.itemsize
        return self.spec.min_bytes + self.pointwise.min_bytes - 2 * middle

    def name(self) -> str:
        """The pair's name (``SeparablePair.name``) in channels-first: problems are layout-free."""
        return SeparablePair(with_layout(self.spec, "nchw"), with_layout(self.pointwise, "nchw")).name()

    def _facts(self):
        d, p = self.spec, self.pointwise
        return {"role": "separable", "in_channels": d.in_channels, "out_channels": p.out_channels,
                "in_size": list(d.in_size), "out_size": list(p.out_size), "kernel": list(d.kernel),
                "stride": list(d.stride)}

    def array_shapes(self, layout):
        return [tuple(self.spec_for(layout).input_shape), tuple(self.spec.weight_shape),
                tuple(self.pointwise.weight_shape)]

    def _pair(self, layout):
        return SeparablePair(self.spec_for(layout), with_layout(self.pointwise, layout))

    def algorithms(self, layout):
        """The separable family's choices ("composed", "fused"), then each conv algorithm both parts take."""
        dw = capable_algos("conv", self.spec_for(layout))
        pw = capable_algos("conv", with_layout(self.pointwise, layout))
        return ["auto"] + capable_algos("separable", self._pair(layout)) + [a for a in dw if a in pw]

    def auto_algorithm(self, layout):
        return None  # "auto" may pick a different algorithm for each part: timed as its own row

    def auto_label(self, layout) -> str | None:
        if auto_algo("separable", self._pair(layout)) == "fused":
            return "fused"
        a, b = auto_algo("conv", self.spec_for(layout)), auto_algo("conv", with_layout(self.pointwise, layout))
        return f"{a}+{b}" if a and b else None

    def fastconv_fn(self, algo, layout):
        import fastconv

        d = self.spec
        cl = layout == "nhwc"
        pads = pads_arg(d.pads)

        def run(x, wd, wp):
            return fastconv.separable_conv2d(x, wd, wp, None, d.stride, pads, d.dilation, algo=algo,
                                             channels_last=cl)
        return run

    def torch_fn(self, layout):
        import torch.nn.functional as TF

        d = self.spec
        if any(b != e for b, e in d.pads):
            raise Unsupported("asymmetric padding")
        pads = tuple(b for b, _ in d.pads)

        def run(x, wd, wp):
            return TF.conv2d(TF.conv2d(x, wd, None, d.stride, pads, d.dilation, d.groups), wp)
        return run

    def torch_note(self, layout):
        return "F.conv2d(groups=C) then F.conv2d 1x1"
