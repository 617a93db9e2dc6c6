"""The tokens of canonical spec names (benchdnn style), written and read in one place.

A name is an op followed by ``_``-separated tokens; ``ConvSpec``, ``PoolSpec`` and
``AdaptivePoolSpec`` (and the benchmark's composite problems) use the same tokens for
the same things:

========================  ======================================================
``mb<N>``                 batch
``c<C>``                  channels (pooling)
``g<G>ic<C>oc<K>``        groups, input and output channels (convolution)
``ic<C>oc<K>``            input and output channels (separable convolution)
``i…`` ``k…`` ``o…``      input, kernel, output sizes, one letter per axis:
                          ``ih56iw56``, ``kd3kh3kw3``, ``oh7ow7``
``s…`` ``d…`` ``op…``     stride, dilation, output padding: ``sh2w2``, ``dw2``
``p…``                    per-side padding, ``begin.end`` when they differ: ``ph1w1``, ``pw4.0``
                          (a transposed conv's crop may be negative: ``pw0.-1``)
``nhwc``                  channels-last
``f16`` ``f64``           dtype other than float32
========================  ======================================================

Each parser names the tokens it takes and adds its own (``bias``, ``ceil``, ...).
Reading is strict: a token must be written exactly as :func:`sizes`, :func:`steps` or
:func:`pads` write it, once, and every error names the string and the token.

    >>> sizes("i", (56, 56)), steps("s", (2, 2)), pads(((1, 1), (4, 0)))
    ('ih56iw56', 'sh2w2', 'ph1w4.0')
    >>> read("parse: 'x'", "mb2_c8_ih5iw6_ph1w0.1_f64", 2, ("mb", "c", "in", "pads", "dtype"))
    {'mb': 2, 'c': 8, 'in': (5, 6), 'pads': ((1, 1), (0, 1)), 'dtype': 'float64'}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

AXES = {1: ("w",), 2: ("h", "w"), 3: ("d", "h", "w")}
DTYPE_TOKENS = {"float16": "f16", "float64": "f64", "int8": "i8", "uint8": "u8", "int16": "i16", "int32": "i32",
                "int64": "i64"}
TOKEN_DTYPES = {token: dtype for dtype, token in DTYPE_TOKENS.items()}

# ---- writing ------------------------------------------------------------------------


def sizes(prefix: str, values) -> str:
    """One ``<prefix><axis><n>`` per axis: ``sizes("k", (3, 3)) == "kh3kw3"``."""
    return "".join(f"{prefix}{a}{n}" for a, n in zip(AXES[len(values)], values))


def steps(letter: str, values) -> str:
    """``<letter>`` then ``<axis><n>`` per axis: ``steps("s", (2, 1)) == "sh2w1"``."""
    return letter + "".join(f"{a}{n}" for a, n in zip(AXES[len(values)], values))


def pads(pairs) -> str:
    """Per-side pads: ``<axis><begin>``, or ``<axis><begin>.<end>`` when they differ."""
    return "p" + "".join(f"{a}{b}" if b == e else f"{a}{b}.{e}" for a, (b, e) in zip(AXES[len(pairs)], pairs))


def layout_dtype(channels_last: bool, dtype: str) -> list[str]:
    """The closing tokens: ``nhwc`` when channels-last, ``f16``/``f64`` when not float32."""
    return (["nhwc"] if channels_last else []) + ([DTYPE_TOKENS[dtype]] if dtype != "float32" else [])


# ---- reading ------------------------------------------------------------------------

# field -> (regex, value): tokens that are one pattern
_PLAIN: dict[str, tuple[str, Callable]] = {
    "mb": (r"mb(\d+)", lambda m: int(m.group(1))),
    "c": (r"c(\d+)", lambda m: int(m.group(1))),
    "g_ic_oc": (r"g(\d+)ic(\d+)oc(\d+)", lambda m: tuple(map(int, m.groups()))),
    "ic_oc": (r"ic(\d+)oc(\d+)", lambda m: tuple(map(int, m.groups()))),
    "nhwc": (r"nhwc", lambda m: True),
    "dtype": ("|".join(TOKEN_DTYPES), lambda m: TOKEN_DTYPES[m.group(0)]),
}
# prefix -> field: tokens with one value per axis, recognised by the prefix and an axis letter
_PER_AXIS = {"i": "in", "k": "kernel", "o": "out", "s": "stride", "d": "dilation", "op": "output_padding",
             "p": "pads"}
_CLAIM = re.compile(r"(op|[ikosdp])(?=[dhw]\d)")

FORMS = {"mb": "mb<N>", "c": "c<C>", "g_ic_oc": "g<G>ic<C>oc<K>", "ic_oc": "ic<C>oc<K>", "in": "i<sizes>",
         "kernel": "k<sizes>", "out": "o<sizes>", "stride": "s<steps>", "dilation": "d<steps>",
         "output_padding": "op<steps>", "pads": "p<pads>"}


def read(where: str, rest: str, nd: int, fields: Iterable[str], own=()) -> dict:
    """``{field: value}`` of the ``_``-separated tokens in ``rest``.

    ``fields`` names the shared tokens this name may hold (keys of ``FORMS``, ``nhwc``,
    ``dtype``); ``own`` adds the parser's own as ``(field, regex, value_of_match)``,
    tried first. ``where`` starts every error message (``"PoolSpec.parse: 'text'"``).
    """
    fields = set(fields)
    out: dict = {}
    for token in rest.split("_"):
        field, value = _read_token(where, token, nd, fields, own)
        if field in out:
            raise ValueError(f"{where}: token {token!r} repeats the {FORMS.get(field, field)} token")
        out[field] = value
    return out


def require(where: str, fields: dict, *keys: str, forms: dict | None = None) -> None:
    """ValueError naming the first of ``keys`` missing from ``fields``."""
    for key in keys:
        if key not in fields:
            form = (forms or {}).get(key) or FORMS.get(key, key)
            raise ValueError(f"{where} lacks its {form} token")


def _read_token(where, token, nd, fields, own):
    for field, pattern, value in own:
        if m := re.fullmatch(pattern, token):
            return field, _value(where, token, value, m)
    if m := _CLAIM.match(token):
        field = _PER_AXIS[m.group(1)]
        if field in fields:
            return field, _per_axis(where, token, m.group(1), AXES[nd])
    for field, (pattern, value) in _PLAIN.items():
        if field in fields and (m := re.fullmatch(pattern, token)):
            return field, value(m)
    raise ValueError(f"{where}: unknown token {token!r}")


def _value(where, token, value, m):
    try:
        return value(m)
    except ValueError:
        raise ValueError(f"{where}: token {token!r} has an unreadable value") from None


def _per_axis(where, token, prefix, axes):
    if prefix == "p":
        m = re.fullmatch("p" + "".join(rf"{a}(-?\d+)(?:\.(-?\d+))?" for a in axes), token)
        if m:
            g = m.groups()
            return tuple((int(g[i]), int(g[i + 1] if g[i + 1] is not None else g[i])) for i in range(0, len(g), 2))
        form = "p" + "".join(f"{a}<begin>[.<end>]" for a in axes)
    else:
        each = prefix if prefix in ("i", "k", "o") else ""
        lead = "" if each else prefix
        m = re.fullmatch(lead + "".join(rf"{each}{a}(\d+)" for a in axes), token)
        if m:
            return tuple(int(v) for v in m.groups())
        form = lead + "".join(f"{each}{a}<n>" for a in axes)
    raise ValueError(f"{where}: token {token!r} should read {form}")
