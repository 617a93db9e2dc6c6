"""Normalisation of user arguments (ints, tuples, padding forms) into plain tuples.

Every function raises ValueError/TypeError naming the op, the argument, what came
and what was expected.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

PADDING_MODES = ("zeros", "constant", "reflect", "replicate", "circular", "symmetric")
PADDING_WORDS = ("valid", "same", "full")
ACTIVATIONS = (None, "relu", "relu6")

# Largest kernel size, stride, dilation, pad or output size accepted: kernels index in
# int64, and a pitch is a stride times an image's extent, so geometry far beyond any
# allocatable array would overflow there (an OverflowError naming nothing).
MAX_GEOMETRY = 2**31 - 1


def check_geometry_int(op: str, name: str, value, given) -> int:
    """``value`` (an int from argument ``name``, as the user ``given`` it) within MAX_GEOMETRY."""
    if value > MAX_GEOMETRY:
        raise ValueError(f"{op}: {name}={given!r} is too large; expected at most {MAX_GEOMETRY} (2**31 - 1)")
    return value


def is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def int_tuple(op: str, name: str, value, nd: int, *, minimum: int | None = 1) -> tuple[int, ...]:
    """An int or a sequence of ``nd`` ints, as a tuple of ``nd`` ints >= minimum."""
    if is_int(value):
        out = (int(value),) * nd
    elif isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) == 1 and nd != 1 and is_int(value[0]):
            out = (int(value[0]),) * nd
        elif len(value) != nd or not all(is_int(v) for v in value):
            raise ValueError(
                f"{op}: {name}={value!r} must be an int or a sequence of {nd} ints"
            )
        else:
            out = tuple(int(v) for v in value)
    else:
        raise TypeError(
            f"{op}: {name} must be an int or a sequence of {nd} ints, got {type(value).__name__}"
        )
    if minimum is not None and any(v < minimum for v in out):
        raise ValueError(f"{op}: {name}={value!r} must be >= {minimum} in every dimension")
    for v in out:
        check_geometry_int(op, name, v, value)
    return out


def padding_pairs(op: str, padding, nd: int, name: str = "padding"):
    """Explicit padding as ((begin, end), ...) per spatial dim, or a padding word.

    Returns either a tuple of pairs or one of "valid", "same", "full".
    """
    if isinstance(padding, str):
        word = padding.lower()
        if word not in PADDING_WORDS:
            raise ValueError(
                f"{op}: {name}={padding!r} is not a padding word; expected one of "
                f"{', '.join(map(repr, PADDING_WORDS))}, an int, a tuple of {nd} ints "
                f"or a tuple of {nd} (begin, end) pairs"
            )
        return word
    if is_int(padding):
        pairs = ((int(padding), int(padding)),) * nd
    elif isinstance(padding, Sequence):
        items = list(padding)
        if len(items) == 1 and nd != 1 and is_int(items[0]):
            items = items * nd
        if len(items) != nd:
            raise ValueError(
                f"{op}: {name}={padding!r} has {len(items)} entries but the op has {nd} "
                f"spatial dims; expected an int, {nd} ints or {nd} (begin, end) pairs"
            )
        pairs = []
        for item in items:
            if is_int(item):
                pairs.append((int(item), int(item)))
            elif (
                isinstance(item, Sequence)
                and not isinstance(item, str)
                and len(item) == 2
                and all(is_int(v) for v in item)
            ):
                pairs.append((int(item[0]), int(item[1])))
            else:
                raise ValueError(
                    f"{op}: {name}={padding!r} entry {item!r} must be an int or a "
                    f"(begin, end) pair of ints"
                )
        pairs = tuple(pairs)
    else:
        raise TypeError(
            f"{op}: {name} must be an int, a tuple or a padding word, got {type(padding).__name__}"
        )
    if any(v < 0 for pair in pairs for v in pair):
        raise ValueError(f"{op}: {name}={padding!r} must not be negative")
    for pair in pairs:
        for v in pair:
            check_geometry_int(op, name, v, padding)
    return pairs


def check_padding_value(op: str, value) -> float:
    """padding_value as a float: a real number (NumPy scalars included), else TypeError."""
    if isinstance(value, (numbers.Real, np.floating, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return float(value)
    raise TypeError(f"{op}: padding_value={value!r} must be a real number (the value of padded cells with "
                    f"padding_mode='constant'), got {type(value).__name__}")


def same_pads(in_size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """ONNX SAME_UPPER: output ceil(in / stride), the odd extra pad at the end."""
    out = -(-in_size // stride)
    extent = dilation * (kernel - 1) + 1
    total = max((out - 1) * stride + extent - in_size, 0)
    return total // 2, total - total // 2


def resolve_pads(op, padding, in_size, kernel, stride, dilation, name="padding"):
    """Per-side pads for a forward sliding window (conv or pooling)."""
    nd = len(in_size)
    pads = padding_pairs(op, padding, nd, name)
    if pads == "valid":
        return ((0, 0),) * nd
    if pads == "same":
        return tuple(same_pads(*args) for args in zip(in_size, kernel, stride, dilation))
    if pads == "full":
        return tuple((d * (k - 1), d * (k - 1)) for k, d in zip(kernel, dilation))
    return pads


def window_out_size(op, in_size, kernel, stride, dilation, pads, ceil_mode=False):
    """Output size of a sliding window; ValueError when the window does not fit."""
    out = []
    for axis, (n, k, s, d, (b, e)) in enumerate(zip(in_size, kernel, stride, dilation, pads)):
        extent = d * (k - 1) + 1
        span = n + b + e - extent
        if ceil_mode:
            # PyTorch's rule: ceil((n + b + e - extent) / s) + 1 windows (so one window
            # that runs past the padded end by less than a stride still counts), and the
            # last window must start inside the input or left padding.
            o = -(-span // s) + 1
            if (o - 1) * s >= n + b:
                o -= 1
        else:
            o = span // s + 1
        if o < 1:
            raise ValueError(
                f"{op}: kernel extent {extent} (kernel {k}, dilation {d}) is larger than "
                f"the padded input {n + b + e} (input {n} + padding {b}+{e}) in spatial dim {axis}"
                + (f" by {-span} >= stride {s}, so even ceil_mode leaves no window" if ceil_mode else "")
            )
        out.append(o)
    return tuple(out)


def check_flag(op: str, name: str, value) -> bool:
    """A bool argument (NumPy bools and the ints 0 and 1 accepted) as a bool."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if is_int(value) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{op}: {name}={value!r} must be a bool")


def check_choice(op: str, name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(
            f"{op}: {name}={value!r} is not supported; expected one of "
            f"{', '.join(map(repr, choices))}"
        )
