"""The pool family of the op registry (fastconv.testing.registry): one small call of
each pooling op (``pool_samples``, tagged ``every_op`` and by kind), the cases the
pooling tests run against PyTorch and the reference (``pool_cases``, tagged ``vs_torch``
or ``beyond_torch``; the integer max pooling cases, ``integer``), and the calls that must
fail (pool_errors.py).
"""

from __future__ import annotations

from functools import partial

from .. import reference
from .op_sample import OpSample, op_sample
from .pool_errors import ERRORS
from .registry import OpInfo, register_op
from .tolerances import tolerance


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


# ---- the pooling tests' cases (tests/test_pooling.py): kernels against torch and the reference
#
# Each is an OpSample of one op; the tests run it in each of their dtypes (the sample's
# dtype is nominal). Tags: ``vs_torch`` (within PyTorch's limits: torch is an oracle),
# ``beyond_torch`` (per-side pads, large pads, avg/lp dilation, "same": the reference alone).


def _case(op, shape, *tags, **kwargs) -> OpSample:
    return OpSample(op, (tuple(shape),), tuple(sorted(kwargs.items())), "float64", tags=frozenset({"pool", *tags}))


def max_cases() -> list[OpSample]:
    """Max pooling within torch's limits: ceil_mode that drops the last window, dilation,
    "valid", many channels on few pixels (channel blocks), 1-D to 3-D."""
    def c(shape, k, s, p, d, ceil):
        return _case(f"max_pool{len(shape) - 2}d", shape, "vs_torch", "max", kernel_size=k, stride=s, padding=p,
                     dilation=d, ceil_mode=ceil)
    return [
        c((2, 3, 17), 3, 2, 1, 1, False),
        c((1, 2, 7), 2, None, 0, 1, True),
        c((1, 2, 5), 2, 2, 1, 1, True),  # ceil_mode: the last window drops
        c((2, 3, 17), 4, 3, 2, 2, True),
        c((2, 3, 7, 9), 3, 2, 1, 1, False),
        c((1, 4, 17, 7), (3, 2), (2, 1), (1, 0), (2, 1), False),
        c((2, 2, 8, 8), 2, 2, 0, 1, True),
        c((1, 2, 5, 6), 2, 2, 1, 1, True),  # drops in H and W
        c((1, 3, 7, 7), 3, 1, 1, 2, False),
        c((1, 2, 7, 9), (2, 3), 3, "valid", 1, True),
        c((1, 70, 5, 5), 3, 2, 1, 1, False),  # few pixels, many channels: channel blocks
        c((1, 2, 5, 7, 6), 3, 2, 1, 1, False),
        c((2, 3, 4, 5, 7), (2, 3, 2), (1, 2, 2), (0, 1, 1), (1, 1, 2), True),
        c((1, 2, 7, 5, 5), 2, 2, 1, 1, True),
    ]


def avg_cases() -> list[OpSample]:
    """Average pooling within torch's limits: ceil_mode, count_include_pad, divisor_override."""
    def c(shape, k, s, p, ceil, cip, div):
        return _case(f"avg_pool{len(shape) - 2}d", shape, "vs_torch", "avg", kernel_size=k, stride=s, padding=p,
                     ceil_mode=ceil, count_include_pad=cip, divisor_override=div)
    return [
        c((2, 3, 17), 3, 2, 1, False, True, None),
        c((2, 3, 17), 3, 2, 1, True, False, None),
        c((1, 2, 5), 2, 2, 1, True, True, None),
        c((1, 2, 7), 4, 3, 2, True, True, None),
        c((2, 3, 7, 9), 3, 2, 1, False, True, None),
        c((2, 3, 7, 9), 3, 2, 1, True, False, None),
        c((2, 3, 7, 9), 3, 2, 1, True, True, None),
        c((1, 2, 6, 7), (3, 2), (2, 1), (1, 1), True, True, 5),
        c((1, 2, 5, 6), 2, 2, 1, True, False, None),
        c((1, 70, 5, 5), 3, 2, 1, False, False, None),
        c((1, 2, 5, 7, 6), 3, 2, 1, False, True, None),
        c((2, 2, 4, 5, 7), (2, 3, 2), (1, 2, 2), (1, 1, 0), True, False, None),
        c((1, 2, 5, 5, 5), 3, 2, 1, True, True, 4),
    ]


def lp_cases() -> list[OpSample]:
    """Lp pooling where torch agrees (ceil_mode clips no window)."""
    def c(shape, p, k, s):
        return _case(f"lp_pool{len(shape) - 2}d", shape, "vs_torch", "lp", norm_type=p, kernel_size=k, stride=s)
    return [
        c((2, 3, 17), 2, 3, 2),
        c((2, 3, 17), 1, 2, None),
        c((1, 2, 9), 3, 3, 3),
        c((2, 3, 7, 9), 2, 3, 2),
        c((2, 3, 7, 9), 1.5, (2, 3), (1, 2)),
        c((1, 70, 6, 6), 2, 3, 3),
        c((1, 2, 5, 7, 6), 2, 2, 2),
        c((1, 2, 5, 5, 6), 3, (1, 2, 3), (2, 1, 3)),
    ]


def beyond_torch_cases() -> list[OpSample]:
    """Calls PyTorch cannot make: per-side pads, pads beyond k/2, "same" and "full",
    windows wholly in padding, avg/lp dilation; against the reference alone."""
    def c(mode, shape, **kw):
        return _case(f"{mode}_pool{len(shape) - 2}d", shape, "beyond_torch", mode, **kw)
    return [
        c("max", (2, 3, 9), kernel_size=3, stride=2, padding=((2, 0),)),
        c("max", (1, 2, 7, 8), kernel_size=3, stride=2, padding=((0, 2), (1, 0))),
        c("max", (1, 2, 7, 8), kernel_size=2, stride=1, padding=3),  # pad > k/2
        c("max", (1, 2, 7, 9), kernel_size=3, stride=2, padding="same"),
        c("max", (1, 2, 7, 9), kernel_size=3, stride=2, padding="same", dilation=2),
        c("max", (1, 2, 5, 6, 7), kernel_size=(2, 3, 2), stride=3, padding="same", ceil_mode=True),
        c("max", (1, 2, 6, 7), kernel_size=2, stride=2, padding="full", ceil_mode=True),
        c("max", (1, 2, 5, 5), kernel_size=2, stride=1, padding=((4, 0), (0, 0))),  # windows wholly in padding
        c("avg", (2, 3, 9), kernel_size=3, stride=2, padding=((2, 0),)),
        c("avg", (2, 3, 9), kernel_size=3, stride=2, padding=((0, 2),), count_include_pad=False),
        c("avg", (1, 2, 7, 8), kernel_size=3, stride=2, padding=((0, 2), (1, 0)), ceil_mode=True),
        c("avg", (1, 2, 7, 8), kernel_size=2, stride=1, padding=3),
        c("avg", (1, 2, 7, 8), kernel_size=2, stride=1, padding=3, count_include_pad=False),
        c("avg", (1, 2, 9, 9), kernel_size=3, stride=1, padding=2, dilation=2),
        c("avg", (1, 2, 9, 9), kernel_size=3, stride=2, padding=1, dilation=(2, 3), count_include_pad=False),
        c("avg", (1, 2, 7, 9), kernel_size=3, stride=2, padding="same"),
        c("avg", (1, 2, 7, 9), kernel_size=3, stride=2, padding="same", count_include_pad=False),
        c("avg", (1, 2, 5, 6, 7), kernel_size=2, stride=(1, 2, 3), padding="same", dilation=2, divisor_override=3),
        c("avg", (1, 2, 5, 5), kernel_size=2, stride=1, padding=((4, 0), (0, 0)), count_include_pad=False),
        c("lp", (2, 3, 9), norm_type=2, kernel_size=3, stride=2, padding=1),
        c("lp", (1, 2, 7, 8), norm_type=2, kernel_size=3, stride=2, padding=((0, 2), (1, 0)), dilation=2),
        c("lp", (1, 2, 7, 8), norm_type=1, kernel_size=2, stride=2, padding="same", ceil_mode=True),
        c("lp", (1, 2, 5, 6, 7), norm_type=3, kernel_size=2, stride=2, padding=1, dilation=(1, 2, 1)),
    ]


def adaptive_cases(mode: str) -> list[OpSample]:
    """Adaptive pooling of ``mode`` ("avg" or "max"), all within torch's reach: more outputs
    than inputs (overlapping windows), None (keep the size), many channels."""
    cases = [((2, 3, 17), 5), ((2, 3, 7), 17), ((1, 2, 9), 1), ((2, 3, 7, 9), (3, 4)), ((2, 3, 7, 9), (None, 2)),
             ((1, 70, 7, 7), 2), ((1, 2, 5, 7, 6), (2, 3, 4)), ((1, 2, 4, 5, 3), (4, None, 5))]
    return [_case(f"adaptive_{mode}_pool{len(shape) - 2}d", shape, "vs_torch", f"adaptive_{mode}", output_size=out)
            for shape, out in cases]


def integer_cases() -> list[OpSample]:
    """Max pooling of integer input (tests/test_integer_pooling.py runs each in every integer
    dtype), within PyTorch's limits."""
    def c(shape, k, s, p, d, ceil):
        return _case(f"max_pool{len(shape) - 2}d", shape, "integer", kernel_size=k, stride=s, padding=p,
                     dilation=d, ceil_mode=ceil)
    return [
        c((2, 3, 13), 3, 2, 1, 1, False),
        c((1, 4, 7, 9), 3, 2, 1, 1, True),
        c((2, 20, 6, 5), (2, 3), (2, 1), (1, 1), (2, 1), False),
        c((1, 2, 4, 5, 6), (2, 3, 2), (1, 2, 2), (0, 1, 1), 1, True),
    ]


def pool_cases() -> list[OpSample]:
    return (max_cases() + avg_cases() + lp_cases() + beyond_torch_cases() + adaptive_cases("avg")
            + adaptive_cases("max") + integer_cases())


POOL_OPS = tuple(f"{mode}_pool{nd}d" for mode in ("max", "avg", "lp") for nd in (1, 2, 3)) + tuple(
    f"adaptive_{mode}_pool{nd}d" for mode in ("max", "avg") for nd in (1, 2, 3)) + (
    "global_avg_pool", "global_max_pool", "spatial_pyramid_pool")


def _reference(op: str):
    for prefix in ("max_pool", "avg_pool", "lp_pool", "adaptive_max_pool", "adaptive_avg_pool"):
        if op.startswith(prefix):
            return getattr(reference, prefix)
    return getattr(reference, op)


def _op_samples(op: str) -> list:
    return [s for s in pool_samples() + pool_cases() if s.op == op]


def _op_errors(op: str) -> list:
    return [e for e in ERRORS if e.op == op]


for _op in POOL_OPS:
    register_op(OpInfo(_op, "pool", samples=partial(_op_samples, _op), error_inputs=partial(_op_errors, _op),
                       reference=_reference(_op),
                       tolerances={"float32": tolerance("pool_lp", "float32")} if _op.startswith("lp") else {}))
