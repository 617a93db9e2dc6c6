"""The backward pass of a convolution layer: the gradients of its input and its weight.

Same layer, same data as the forward problem, plus ``grad_output`` (the output's shape,
in the run's layout). fastconv runs ``fastconv.grad.conv<N>d_backward`` (both gradients in
one call, bitwise ``conv<N>d_input`` then ``conv<N>d_weight``); PyTorch runs ``aten.convolution_backward``
with output_mask (input, weight), the one kernel its autograd calls for both, as a
training step does. The layers have no bias, so neither side computes one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fastconv.spec import ConvSpec

from .base import Problem, Unsupported
from .calls import pads_arg, torch_layout_ok


def backward_of(problem) -> ConvBackwardProblem | None:
    """The backward problem of a (non-transposed) convolution layer, else None."""
    from .conv import ConvProblem

    if isinstance(problem, ConvProblem) and not problem.spec.transposed:
        return ConvBackwardProblem(problem.spec)
    return None


@dataclass(frozen=True)
class ConvBackwardProblem(Problem):
    spec: ConvSpec  # the forward convolution
    kind = "conv_backward"
    direction = "backward"

    @property
    def op(self) -> str:
        return f"{self.spec.op}_backward"

    def name(self) -> str:
        return f"backward_{self.spec.name()}"

    @property
    def flops(self) -> int:
        """Two products of the forward's size (grad input, grad weight), without the bias adds."""
        return 2 * 2 * self.spec.macs

    @property
    def min_bytes(self) -> int:
        """grad_output, input and weight read; grad input and grad weight written."""
        s = self.spec
        return s.itemsize * (math.prod(s.output_shape) + 2 * math.prod(s.input_shape) + 2 * math.prod(s.weight_shape))

    def _facts(self) -> dict:
        from .conv import ConvProblem

        return {**ConvProblem(self.spec)._facts(), "direction": "backward", "forward": self.spec.name()}

    def array_shapes(self, layout):
        spec = self.spec_for(layout)
        return [tuple(spec.input_shape), tuple(spec.weight_shape), tuple(spec.output_shape)]

    def make_arrays(self, rng: np.random.Generator) -> tuple:
        x, w, g = super().make_arrays(rng)
        return x, w, (g * math.sqrt(math.prod(g.shape[1:]))).astype(g.dtype)  # grad_output of unit scale

    @staticmethod
    def in_layout(arrays: tuple, layout: str) -> tuple:
        if layout == "nchw":
            return arrays
        x, w, g = arrays
        return (np.ascontiguousarray(np.moveaxis(x, 1, -1)), w, np.ascontiguousarray(np.moveaxis(g, 1, -1)))

    def torch_arrays(self, arrays: tuple, layout: str) -> tuple:
        x, w = super().torch_arrays(arrays[:2], layout)
        (g,) = super().torch_arrays(arrays[2:], layout)
        return x, w, g

    def algorithms(self, layout):
        return ["auto"]

    def fastconv_fn(self, algo, layout):
        from fastconv import grad

        s = self.spec
        cl = layout == "nhwc"
        backward = getattr(grad, f"{s.op}_backward")
        pads = pads_arg(s.pads)

        def run(x, w, g):
            gx, gw, _ = backward(g, x, w, s.stride, pads, s.dilation, s.groups, channels_last=cl, algo=algo)
            return gx, gw
        return run

    def torch_fn(self, layout):
        import torch

        s = self.spec
        torch_layout_ok(s.nd, layout)
        if any(b != e for b, e in s.pads):
            raise Unsupported("PyTorch's convolution_backward has no per-side padding")
        pads = [b for b, _ in s.pads]
        backward = torch.ops.aten.convolution_backward

        def run(x, w, g):
            gx, gw, _ = backward(g, x, w, None, list(s.stride), pads, list(s.dilation), False, [0] * s.nd,
                                 s.groups, [True, True, False])
            return gx, gw
        return run

    def torch_note(self, layout):
        return "aten.convolution_backward (input and weight), the kernel autograd runs"

    def output_nchw(self, result, layout, library):
        """grad input (NCHW) then grad weight, flattened, each scaled by its own largest magnitude,
        so that a check over the pair holds each part to the tolerance."""
        gx, gw = result
        parts = []
        for i, part in enumerate((gx, gw)):
            if library == "torch":
                part = part.detach().contiguous().numpy()
            part = np.asarray(part, dtype=np.float64)
            if i == 0 and library != "torch" and layout == "nhwc":
                part = np.moveaxis(part, -1, 1)
            scale = float(np.max(np.abs(part))) if part.size else 0.0
            parts.append(part.ravel() / (scale or 1.0))
        return np.concatenate(parts)
