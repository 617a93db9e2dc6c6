"""fastconv's arguments as the typed lists a torch op schema takes, and back.

A schema has no union types, so ``padding`` travels as two arguments: ``padding_name``
(``"same"``, ``"valid"``, ``"full"``, or ``""``) and ``padding``, the per-side pads of each
spatial dim flattened ``[begin0, end0, begin1, end1, ...]``. Malformed values pass through
unchanged as far as possible so that fastconv's own checks name them.
"""

from __future__ import annotations

import numbers


def ints(op, name, value, nd):
    """An int or a sequence of ints as a list of ints (``nd`` of them for an int; a sequence's
    length is fastconv's to check)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return [int(value)] * nd
    try:
        return [int(v) for v in value]
    except (TypeError, ValueError):
        raise TypeError(f"{op}: {name} must be an int or a sequence of {nd} ints, got {value!r}") from None


def optional_ints(op, name, value, nd):
    """As :func:`ints`, with None as the empty list."""
    return [] if value is None else ints(op, name, value, nd)


def encode_padding(op, padding, nd):
    """(flat per-side pads, padding name) of any padding form fastconv takes."""
    if isinstance(padding, str):
        return [], padding
    if isinstance(padding, numbers.Integral) and not isinstance(padding, bool):
        return [int(padding)] * (2 * nd), ""
    flat = []
    try:
        for p in padding:
            if isinstance(p, numbers.Integral) and not isinstance(p, bool):
                flat += [int(p), int(p)]
            else:
                begin, end = p
                flat += [int(begin), int(end)]
    except (TypeError, ValueError):
        raise TypeError(f"{op}: padding must be an int, a string, {nd} ints or {nd} (begin, end) pairs, "
                        f"got {padding!r}") from None
    return flat, ""


def pairs(padding):
    """Flat per-side pads as fastconv's ``((begin, end), ...)``."""
    return tuple(zip(padding[::2], padding[1::2]))


def compact(values):
    """Per-dim ints as fastconv takes them, one int when all dims agree: the NumPy ops'
    call-plan key checks a nested tuple item by item (about 4 us for 2-D pairs)."""
    first = values[0]
    return first if all(v == first for v in values) else tuple(values)


def padding_arg(padding_name, pads):
    """fastconv's padding argument of a packed call (name, or flat per-side pads): the name,
    one int, per-dim ints or per-dim pairs, the first that says it."""
    if padding_name:
        return padding_name
    begins, ends = pads[::2], pads[1::2]
    return compact(begins) if begins == ends else pairs(pads)


def decode_padding(padding, padding_name):
    """fastconv's padding argument from :func:`encode_padding`'s pair."""
    return padding_name or pairs(padding)


def optional(values):
    """A schema list back to fastconv's argument: the empty list is None, else a tuple."""
    return tuple(values) if values else None
