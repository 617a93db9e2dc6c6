"""Workload suites -> benchmark problems, built from the library's own specs.

A *problem* is one layer of a suite: a fastconv call with fixed shapes and arguments.
It has a short canonical name that prints and parses (benchdnn style, the name of the
library's spec where there is one), FLOPs and minimum bytes moved taken from that spec,
and callables that run it on fastconv (per algorithm, NCHW or channels-last) and on
PyTorch (``torch.nn.functional``, NCHW or channels_last).

    >>> p = problem_from_layer({"op": "conv2d", "input": [1, 32, 56, 56],
    ...                         "weight": [32, 1, 3, 3], "padding": 1, "groups": 32})
    >>> p.name()
    'conv2d_mb1_g32ic32oc32_ih56iw56_kh3kw3_ph1w1'
    >>> parse(p.name()) == p
    True

Problems are layout-free: the layout ("nchw" or "nhwc") is chosen per run, and a
problem builds the spec of either with :meth:`Problem.spec_for`.

Kinds of problem and their names:

====================  ============================================================
conv / transposed     ``ConvSpec.name()``, e.g. ``conv2d_mb1_g1ic64oc64_ih56iw56_kh3kw3_ph1w1``
separable_conv2d      ``separable_conv2d_mb1_ic32oc64_ih112iw112_kh3kw3_ph1w1`` (``m<M>``
                      channel multiplier, ``s``/``d``/``p`` tokens as conv)
max/avg/lp pooling    ``PoolSpec.name()``, e.g. ``max_pool2d_mb1_c64_ih112iw112_kh3kw3_sh2w2_ph1w1``
adaptive pooling      ``AdaptivePoolSpec.name()``, e.g. ``adaptive_avg_pool2d_mb1_c512_ih14iw14_oh7ow7``
global pooling        ``global_avg_pool2d_mb1_c1280_ih7iw7``
spatial pyramid       ``spatial_pyramid_pool2d_mb1_c256_ih13iw13_l1.2.4`` (``avg`` if not max)
====================  ============================================================

Every name may end in ``_f64`` (or ``_f16``) for another dtype, as the specs do.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastconv.spec import AdaptivePoolSpec, ConvSpec, PoolSpec
from fastconv.spec.conv import resolve_conv
from fastconv.spec.pool import resolve_adaptive_pool, resolve_pool

WORKLOADS = Path(__file__).resolve().parent / "workloads"
LAYOUTS = ("nchw", "nhwc")
_AXES = {1: ("w",), 2: ("h", "w"), 3: ("d", "h", "w")}
_DTYPE_TOKEN = {"float16": "f16", "float64": "f64"}
_TOKEN_DTYPE = {v: k for k, v in _DTYPE_TOKEN.items()}
_ITEMSIZE = {"float16": 2, "float32": 4, "float64": 8}


class Unsupported(Exception):
    """This implementation cannot run this problem (the message says why)."""


# ---------------------------------------------------------------------------------------
# Suites
# ---------------------------------------------------------------------------------------


def suite_names() -> list[str]:
    return sorted(p.stem for p in WORKLOADS.glob("*.json"))


def load_suite(suite: str, dtype: str = "float32") -> list[tuple[str, Problem]]:
    """[(layer name, problem)] of one suite, in file order."""
    path = WORKLOADS / f"{suite}.json"
    if not path.exists():
        raise ValueError(f"unknown suite {suite!r}; the suites are: {', '.join(suite_names())}")
    layers = json.loads(path.read_text())["layers"]
    return [(layer["name"], problem_from_layer(layer, dtype)) for layer in layers]


def suite_about(suite: str) -> str:
    return json.loads((WORKLOADS / f"{suite}.json").read_text()).get("about", "")


# ---------------------------------------------------------------------------------------
# Problem kinds
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """Base: subclasses set ``op`` and the spec(s); everything else derives from them."""

    kind = "abstract"

    # -- identity -------------------------------------------------------------------
    def name(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.name()

    @property
    def nd(self) -> int:
        return self.spec.nd

    @property
    def dtype(self) -> str:
        return self.spec.dtype

    @property
    def batch(self) -> int:
        return self.spec.batch

    # -- arithmetic (from the library's specs) ---------------------------------------
    @property
    def flops(self) -> int:
        return sum(s.flops for s in self.specs)

    @property
    def min_bytes(self) -> int:
        return sum(s.min_bytes for s in self.specs)

    @property
    def intensity(self) -> float:
        return self.flops / max(self.min_bytes, 1)

    @property
    def specs(self) -> tuple:
        return (self.spec,)

    def spec_for(self, layout: str):
        """The library's spec of this problem in ``layout`` (the first, for composites)."""
        return _with_layout(self.spec, layout)

    def describe(self) -> dict:
        """What the result file records about the problem (layout-free)."""
        return {"name": self.name(), "op": self.op, "kind": self.kind, "nd": self.nd,
                "dtype": self.dtype, "batch": self.batch, "flops": self.flops,
                "min_bytes": self.min_bytes, "intensity": self.intensity,
                "parts": [s.name() for s in self.specs] if len(self.specs) > 1 else [],
                **self._facts()}

    def _facts(self) -> dict:
        return {}

    # -- data ------------------------------------------------------------------------
    def array_shapes(self, layout: str) -> list[tuple]:
        """Shapes of the fastconv call's array arguments (input first)."""
        return [tuple(self.spec_for(layout).input_shape)]

    def set_bytes(self, layout: str = "nchw") -> int:
        item = _ITEMSIZE[self.dtype]
        return sum(math.prod(s) for s in self.array_shapes(layout)) * item

    def make_arrays(self, rng: np.random.Generator) -> tuple:
        """One set of fresh NumPy arguments in NCHW (weights scaled by 1/sqrt(fan-in))."""
        dt = np.dtype(self.dtype)
        shapes = self.array_shapes("nchw")
        arrays = [rng.standard_normal(shapes[0], dtype=np.float64).astype(dt)]
        for shape in shapes[1:]:
            fan_in = math.prod(shape[1:])
            arrays.append((rng.standard_normal(shape) / math.sqrt(fan_in)).astype(dt))
        return tuple(arrays)

    @staticmethod
    def in_layout(arrays: tuple, layout: str) -> tuple:
        """The same values as fastconv takes them in ``layout`` (a channels-last copy of the input)."""
        if layout == "nchw":
            return arrays
        return (np.ascontiguousarray(np.moveaxis(arrays[0], 1, -1)), *arrays[1:])

    def torch_arrays(self, arrays: tuple, layout: str) -> tuple:
        """PyTorch tensors for the same data, sharing memory where the layout allows."""
        import torch

        x = torch.from_numpy(arrays[0])
        if layout == "nhwc":
            x = x.movedim(-1, 1)  # (N, C, *spatial) view with channels-last strides
        return (x, *(self._torch_weight(torch.from_numpy(a), layout) for a in arrays[1:]))

    def _torch_weight(self, w, layout):
        # A channels_last model (model.to(memory_format=...)) holds its weights channels-last.
        fmt = _torch_memory_format(w.dim(), layout)
        return w.contiguous(memory_format=fmt) if fmt is not None else w

    # -- callables -------------------------------------------------------------------
    def fastconv_missing(self) -> str | None:
        """Why fastconv cannot run this problem at all (op not implemented yet), or None."""
        import fastconv

        return None if callable(getattr(fastconv, self.op, None)) else f"fastconv.{self.op} is not implemented"

    def algorithms(self, layout: str) -> list[str]:
        """fastconv algorithms that can serve this problem in ``layout``."""
        raise NotImplementedError

    def auto_algorithm(self, layout: str) -> str | None:
        """The algorithm ``algo="auto"`` runs, when it is one of :meth:`algorithms`."""
        return None

    def auto_label(self, layout: str) -> str | None:
        """What ``algo="auto"`` runs, for the record ("depthwise+im2col" for a composite)."""
        return self.auto_algorithm(layout)

    def fastconv_fn(self, algo: str, layout: str):
        """``fn(*arrays)`` running fastconv with ``algo`` ("auto" allowed) in ``layout``."""
        raise NotImplementedError

    def torch_fn(self, layout: str):
        """``fn(*tensors)`` running PyTorch in ``layout``; raises Unsupported if it cannot."""
        raise NotImplementedError

    def torch_note(self, layout: str) -> str:
        """How the PyTorch row runs, when it is not one plain ``torch.nn.functional`` call."""
        return ""

    def output_nchw(self, result, layout: str, library: str) -> np.ndarray:
        """A result as a float64 NumPy array in (N, C, *spatial) order, for checking."""
        if library == "torch":
            result = result.detach().contiguous().numpy()
            return result.astype(np.float64)
        result = np.asarray(result, dtype=np.float64)
        if layout == "nhwc" and result.ndim >= 3:
            result = np.moveaxis(result, -1, 1)
        return result

    def check_order_insensitive(self) -> bool:
        return False


def _with_layout(spec, layout: str):
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    cl = layout == "nhwc"
    return spec if spec.channels_last == cl else _replace(spec, channels_last=cl)


def _replace(spec, **changes):
    from dataclasses import replace

    return replace(spec, **changes)


def _torch_memory_format(ndim: int, layout: str):
    if layout != "nhwc":
        return None
    import torch

    return {4: torch.channels_last, 5: torch.channels_last_3d}.get(ndim)


def _torch_layout_ok(nd: int, layout: str):
    if layout == "nhwc" and nd == 1:
        raise Unsupported("PyTorch has no channels_last memory format for 3-D (N, C, W) tensors")


def _pads_arg(pads):
    """Per-side pads as the simplest argument fastconv and PyTorch both read."""
    if all(b == e for b, e in pads):
        return tuple(b for b, _ in pads)
    return tuple(tuple(p) for p in pads)


def _torch_pad(pads):
    """F.pad's argument (last dim first) for per-side pads."""
    out = []
    for b, e in reversed(pads):
        out += [b, e]
    return out


def _accepts_named(fn, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _capable(family: str, spec) -> list[str]:
    from fastconv.dispatch import capable

    try:
        return list(capable(family, "cpu", spec))
    except ImportError:  # the backend module of this family is not written yet
        return []


def _auto(family: str, spec) -> str | None:
    from fastconv.dispatch import choose

    try:
        return choose(family, "cpu", spec, "auto").algo
    except (ImportError, ValueError):
        return None


# ---- convolution -----------------------------------------------------------------------


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
        return _capable("conv_transpose" if self.spec.transposed else "conv", self.spec_for(layout))

    def auto_algorithm(self, layout):
        return _auto("conv_transpose" if self.spec.transposed else "conv", self.spec_for(layout))

    def fastconv_fn(self, algo, layout):
        import fastconv

        s = self.spec
        f = getattr(fastconv, s.op)
        cl = layout == "nhwc"
        pads = _pads_arg(s.pads)
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
        _torch_layout_ok(s.nd, layout)
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
            widths = _torch_pad(s.pads)

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
        d, p = self.spec, self.pointwise
        axes = _AXES[2]
        parts = ["separable_conv2d", f"mb{d.batch}", f"ic{d.in_channels}oc{p.out_channels}",
                 "".join(f"i{a}{n}" for a, n in zip(axes, d.in_size)),
                 "".join(f"k{a}{n}" for a, n in zip(axes, d.kernel))]
        mult = d.out_channels // d.in_channels
        if mult != 1:
            parts.append(f"m{mult}")
        parts += _window_tokens(axes, d.stride, d.dilation, d.pads)
        if d.dtype != "float32":
            parts.append(_DTYPE_TOKEN[d.dtype])
        return "_".join(parts)

    def _facts(self):
        d, p = self.spec, self.pointwise
        return {"role": "separable", "in_channels": d.in_channels, "out_channels": p.out_channels,
                "in_size": list(d.in_size), "out_size": list(p.out_size), "kernel": list(d.kernel),
                "stride": list(d.stride)}

    def array_shapes(self, layout):
        return [tuple(self.spec_for(layout).input_shape), tuple(self.spec.weight_shape),
                tuple(self.pointwise.weight_shape)]

    def algorithms(self, layout):
        dw = _capable("conv", self.spec_for(layout))
        pw = _capable("conv", _with_layout(self.pointwise, layout))
        return ["auto"] + [a for a in dw if a in pw]

    def auto_algorithm(self, layout):
        return None  # "auto" may pick a different algorithm for each part: timed as its own row

    def auto_label(self, layout) -> str | None:
        a, b = _auto("conv", self.spec_for(layout)), _auto("conv", _with_layout(self.pointwise, layout))
        return f"{a}+{b}" if a and b else None

    def fastconv_fn(self, algo, layout):
        import fastconv

        d = self.spec
        cl = layout == "nhwc"
        pads = _pads_arg(d.pads)

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


# ---- pooling ---------------------------------------------------------------------------


class _PoolCallMixin:
    family = "pool"

    def _fastconv_op(self):
        import fastconv

        f = getattr(fastconv, self.op, None)
        if f is None:
            raise Unsupported(f"fastconv.{self.op} is not implemented")
        return f

    def algorithms(self, layout):
        """Explicit algorithms when the op takes ``algo=``; else the one it runs, as "auto"."""
        if self.fastconv_missing():
            return []
        f = self._fastconv_op()
        names = self._capable_names(layout)
        if names and _accepts_named(f, "algo"):
            return names
        return ["auto"]

    def _capable_names(self, layout):
        return _capable(self.family, self.spec_for(layout))

    def auto_algorithm(self, layout):
        algos = self.algorithms(layout)
        if algos == ["auto"]:
            return None
        return _auto(self.family, self.spec_for(layout))

    def auto_label(self, layout) -> str | None:
        return _auto(self.family, self.spec_for(layout))

    def _algo_kw(self, algo):
        return {} if algo == "auto" else {"algo": algo}


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
        kw = dict(channels_last=layout == "nhwc", **self._algo_kw(algo))
        pads = _pads_arg(s.pads)
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
        _torch_layout_ok(s.nd, layout)
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
        kw = dict(channels_last=layout == "nhwc", **self._algo_kw(algo))

        def run(x):
            return f(x, s.out_size, **kw)
        return run

    def torch_fn(self, layout):
        import torch.nn.functional as TF

        _torch_layout_ok(self.spec.nd, layout)
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
        parts = [f"global_{s.mode}_pool{s.nd}d", f"mb{s.batch}", f"c{s.channels}",
                 "".join(f"i{a}{n}" for a, n in zip(_AXES[s.nd], s.in_size))]
        if s.dtype != "float32":
            parts.append(_DTYPE_TOKEN[s.dtype])
        return "_".join(parts)

    def _facts(self):
        s = self.spec
        return {"role": f"global_{s.mode}_pool", "channels": s.channels, "in_size": list(s.in_size),
                "out_size": list(s.out_size)}

    def fastconv_fn(self, algo, layout):
        f = self._fastconv_op()
        kw = dict(channels_last=layout == "nhwc", **self._algo_kw(algo))

        def run(x):
            return f(x, **kw)
        return run

    def torch_fn(self, layout):
        import torch.nn.functional as TF

        _torch_layout_ok(self.spec.nd, layout)
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
        return tuple(_replace(self.spec, out_size=(lv,) * self.spec.nd) for lv in self.levels)

    @property
    def min_bytes(self) -> int:
        """Input read once, every level's output written."""
        s = self.spec
        outs = sum(lv ** s.nd for lv in self.levels) * s.batch * s.channels
        return (math.prod(s.input_shape) + outs) * _ITEMSIZE[s.dtype]

    def name(self):
        s = self.spec
        parts = [f"spatial_pyramid_pool{s.nd}d", f"mb{s.batch}", f"c{s.channels}",
                 "".join(f"i{a}{n}" for a, n in zip(_AXES[s.nd], s.in_size)),
                 "l" + ".".join(str(lv) for lv in self.levels)]
        if s.mode != "max":
            parts.append(s.mode)
        if s.dtype != "float32":
            parts.append(_DTYPE_TOKEN[s.dtype])
        return "_".join(parts)

    def _facts(self):
        s = self.spec
        return {"role": f"pyramid_{s.mode}_pool", "channels": s.channels, "in_size": list(s.in_size),
                "levels": list(self.levels)}

    def _capable_names(self, layout):
        return []  # a composite: always timed as the public op decides

    def auto_label(self, layout):
        return _auto(self.family, _with_layout(self.specs[-1], layout))

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

        _torch_layout_ok(self.spec.nd, layout)
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


# ---------------------------------------------------------------------------------------
# Workload layer -> problem
# ---------------------------------------------------------------------------------------

_POOL_OP = re.compile(r"(max|avg|lp)_pool([123])d")
_ADAPTIVE_OP = re.compile(r"adaptive_(max|avg)_pool([123])d")


def problem_from_layer(layer: dict, dtype: str = "float32") -> Problem:
    """A problem from one workload entry (channels-first shapes, PyTorch weight layout)."""
    op = layer["op"]
    shape = tuple(layer["input"])
    if m := re.fullmatch(r"(conv|conv_transpose)([123])d", op):
        kw = dict(stride=layer.get("stride", 1), padding=_padding(layer.get("padding", 0)),
                  dilation=layer.get("dilation", 1) or 1, groups=layer.get("groups", 1) or 1, dtype=dtype)
        if m.group(1) == "conv_transpose":
            kw["output_padding"] = layer.get("output_padding", 0) or 0
        return ConvProblem(resolve_conv(op, shape, tuple(layer["weight"]), **kw))
    if op in ("depthwise_conv2d", "pointwise_conv2d"):
        w = tuple(layer["weight"])
        if op == "pointwise_conv2d" and len(w) == 2:
            w = (*w, 1, 1)
        groups = shape[1] if op == "depthwise_conv2d" else 1
        return ConvProblem(resolve_conv("conv2d", shape, w, stride=layer.get("stride", 1),
                                        padding=_padding(layer.get("padding", 0)),
                                        dilation=layer.get("dilation", 1) or 1, groups=groups, dtype=dtype))
    if op == "separable_conv2d":
        dw = resolve_conv("conv2d", shape, tuple(layer["depthwise_weight"]), stride=layer.get("stride", 1),
                          padding=_padding(layer.get("padding", 0)), dilation=layer.get("dilation", 1) or 1,
                          groups=shape[1], dtype=dtype)
        pw_w = tuple(layer["pointwise_weight"])
        if len(pw_w) == 2:
            pw_w = (*pw_w, 1, 1)
        pw = resolve_conv("conv2d", dw.output_shape, pw_w, dtype=dtype)
        return SeparableProblem(dw, pw)
    nd = len(shape) - 2
    if m := _POOL_OP.fullmatch(op):
        mode = m.group(1)
        kw = dict(ceil_mode=bool(layer.get("ceil_mode", False)), dtype=dtype)
        if mode == "avg":
            kw["count_include_pad"] = layer.get("count_include_pad", True)
            kw["divisor_override"] = layer.get("divisor_override")
        if mode == "lp":
            kw["norm_type"] = layer.get("norm_type", 2.0)
        spec = resolve_pool(op, mode, int(m.group(2)), shape, layer["kernel_size"], layer.get("stride"),
                            _padding(layer.get("padding", 0)), layer.get("dilation", 1) or 1, **kw)
        return PoolProblem(spec)
    if m := _ADAPTIVE_OP.fullmatch(op):
        spec = resolve_adaptive_pool(op, m.group(1), int(m.group(2)), shape, layer["output_size"], dtype=dtype)
        return AdaptivePoolProblem(spec)
    if op in ("global_avg_pool", "global_max_pool"):
        mode = op.split("_")[1]
        return GlobalPoolProblem(resolve_adaptive_pool(op, mode, nd, shape, 1, dtype=dtype))
    if op == "spatial_pyramid_pool":
        levels = tuple(int(v) for v in layer.get("levels", (1, 2, 4)))
        mode = layer.get("mode", "max")
        spec = resolve_adaptive_pool(op, mode, nd, shape, levels[0], dtype=dtype)
        return PyramidPoolProblem(spec, levels)
    raise ValueError(f"problem_from_layer: unknown op {op!r} in layer {layer.get('name', layer)!r}")


def _padding(value):
    """Workload padding: an int, a list of ints, or a list of [begin, end] pairs."""
    if isinstance(value, list):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return value


# ---------------------------------------------------------------------------------------
# Canonical names -> problems
# ---------------------------------------------------------------------------------------


def parse(text: str) -> Problem:
    """The problem a canonical name describes: ``parse(p.name()) == p``."""
    if re.match(r"conv(_transpose)?[123]d_", text):
        return ConvProblem(ConvSpec.parse(text))
    if text.startswith("separable_conv2d_"):
        return _parse_separable(text)
    if _POOL_OP.match(text):
        library_parse = getattr(PoolSpec, "parse", None)
        return PoolProblem(library_parse(text) if library_parse else _parse_pool(text))
    if _ADAPTIVE_OP.match(text):
        library_parse = getattr(AdaptivePoolSpec, "parse", None)
        return AdaptivePoolProblem(library_parse(text) if library_parse else _parse_adaptive(text))
    if m := re.match(r"global_(max|avg)_pool([123])d_", text):
        f = _fields(text, text[m.end():], int(m.group(2)))
        op = f"global_{m.group(1)}_pool"
        return GlobalPoolProblem(resolve_adaptive_pool(op, m.group(1), f["nd"], f["shape"], 1, dtype=f["dtype"]))
    if m := re.match(r"spatial_pyramid_pool([123])d_", text):
        f = _fields(text, text[m.end():], int(m.group(1)))
        levels = f.get("levels")
        if not levels:
            raise ValueError(f"parse: {text!r} lacks its l<levels> token")
        mode = f.get("mode", "max")
        spec = resolve_adaptive_pool("spatial_pyramid_pool", mode, f["nd"], f["shape"], levels[0], dtype=f["dtype"])
        return PyramidPoolProblem(spec, levels)
    raise ValueError(f"parse: {text!r} is not a problem name (conv*, separable_conv2d_*, *_pool*)")


def _window_tokens(axes, stride, dilation, pads) -> list[str]:
    out = []
    if any(s != 1 for s in stride):
        out.append("s" + "".join(f"{a}{n}" for a, n in zip(axes, stride)))
    if any(d != 1 for d in dilation):
        out.append("d" + "".join(f"{a}{n}" for a, n in zip(axes, dilation)))
    if any(p != (0, 0) for p in pads):
        out.append("p" + "".join(f"{a}{b}" if b == e else f"{a}{b}.{e}" for a, (b, e) in zip(axes, pads)))
    return out


def _axis_ints(text, token, prefix, axes) -> tuple:
    vals = []
    for a in axes:
        m = re.search(rf"{prefix}{a}(\d+)", token)
        if not m:
            raise ValueError(f"parse: {text!r}: token {token!r} lacks axis {a}")
        vals.append(int(m.group(1)))
    return tuple(vals)


def _axis_pads(text, token, axes) -> tuple:
    pads = []
    for a in axes:
        m = re.search(rf"{a}(\d+)(?:\.(\d+))?", token)
        if not m:
            raise ValueError(f"parse: {text!r}: padding token {token!r} lacks axis {a}")
        b = int(m.group(1))
        pads.append((b, int(m.group(2)) if m.group(2) else b))
    return tuple(pads)


def _fields(text: str, rest: str, nd: int) -> dict:
    """Tokens shared by the pooling and separable names."""
    axes = _AXES[nd]
    f: dict = {"nd": nd, "mb": 1, "dtype": "float32", "dilation": (1,) * nd, "pads": ((0, 0),) * nd}
    for token in rest.split("_"):
        if m := re.fullmatch(r"mb(\d+)", token):
            f["mb"] = int(m.group(1))
        elif m := re.fullmatch(r"c(\d+)", token):
            f["c"] = int(m.group(1))
        elif m := re.fullmatch(r"ic(\d+)oc(\d+)", token):
            f["c"], f["oc"] = int(m.group(1)), int(m.group(2))
        elif m := re.fullmatch(r"m(\d+)", token):
            f["mult"] = int(m.group(1))
        elif m := re.fullmatch(r"l(\d+(?:\.\d+)*)", token):
            f["levels"] = tuple(int(v) for v in m.group(1).split("."))
        elif token.startswith("i"):
            f["in"] = _axis_ints(text, token, "i", axes)
        elif token.startswith("k"):
            f["kernel"] = _axis_ints(text, token, "k", axes)
        elif token.startswith("o"):
            f["out"] = _axis_ints(text, token, "o", axes)
        elif m := re.fullmatch(r"div(\d+)", token):
            f["divisor_override"] = int(m.group(1))
        elif m := re.fullmatch(r"norm([0-9.e+-]+)", token):
            f["norm_type"] = float(m.group(1))
        elif token == "ceil":
            f["ceil_mode"] = True
        elif token == "excludepad":
            f["count_include_pad"] = False
        elif token in ("max", "avg"):
            f["mode"] = token
        elif token == "nhwc":
            f["channels_last"] = True
        elif token in _TOKEN_DTYPE:
            f["dtype"] = _TOKEN_DTYPE[token]
        elif token.startswith("s"):
            f["stride"] = _axis_ints(text, token[1:], "", axes)
        elif token.startswith("d"):
            f["dilation"] = _axis_ints(text, token[1:], "", axes)
        elif token.startswith("p"):
            f["pads"] = _axis_pads(text, token[1:], axes)
        else:
            raise ValueError(f"parse: {text!r}: unknown token {token!r}")
    for key in ("c", "in"):
        if key not in f:
            raise ValueError(f"parse: {text!r} lacks its {'c<C>' if key == 'c' else 'i<size>'} token")
    cl = f.get("channels_last", False)
    f["shape"] = (f["mb"], *f["in"], f["c"]) if cl else (f["mb"], f["c"], *f["in"])
    return f


def _parse_separable(text: str) -> SeparableProblem:
    f = _fields(text, text[len("separable_conv2d_"):], 2)
    if "oc" not in f or "kernel" not in f:
        raise ValueError(f"parse: {text!r} needs ic<C>oc<K> and k<size> tokens")
    c, mult = f["c"], f.get("mult", 1)
    dtype = f["dtype"]
    dw = resolve_conv("conv2d", f["shape"], (c * mult, 1, *f["kernel"]), stride=f.get("stride", 1),
                      padding=f["pads"], dilation=f["dilation"], groups=c, dtype=dtype)
    pw = resolve_conv("conv2d", dw.output_shape, (f["oc"], c * mult, 1, 1), dtype=dtype)
    return SeparableProblem(dw, pw)


def _parse_pool(text: str) -> PoolSpec:
    m = _POOL_OP.match(text)
    mode, nd = m.group(1), int(m.group(2))
    f = _fields(text, text[m.end() + 1:], nd)
    if "kernel" not in f:
        raise ValueError(f"parse: {text!r} lacks its k<size> token")
    kw = dict(ceil_mode=f.get("ceil_mode", False), channels_last=f.get("channels_last", False), dtype=f["dtype"])
    if mode == "avg":
        kw["count_include_pad"] = f.get("count_include_pad", True)
        kw["divisor_override"] = f.get("divisor_override")
    if mode == "lp":
        kw["norm_type"] = f.get("norm_type", 2.0)
    return resolve_pool(f"{mode}_pool{nd}d", mode, nd, f["shape"], f["kernel"], f.get("stride"), f["pads"],
                        f["dilation"], **kw)


def _parse_adaptive(text: str) -> AdaptivePoolSpec:
    m = _ADAPTIVE_OP.match(text)
    mode, nd = m.group(1), int(m.group(2))
    f = _fields(text, text[m.end() + 1:], nd)
    if "out" not in f:
        raise ValueError(f"parse: {text!r} lacks its o<size> token")
    return resolve_adaptive_pool(f"adaptive_{mode}_pool{nd}d", mode, nd, f["shape"], f["out"],
                                 channels_last=f.get("channels_last", False), dtype=f["dtype"])
