"""SeparablePair: one separable_conv2d call, its depthwise spec then its pointwise spec.

The separable family of the dispatch table takes the pair. It prints as one canonical
string, the benchmark's row name, that :meth:`SeparablePair.parse` reads back:

    >>> pair = SeparablePair.parse("separable_conv2d_mb1_ic32oc64_ih112iw112_kh3kw3_ph1w1")
    >>> pair.depthwise.name(), pair.pointwise.name()
    ('conv2d_mb1_g32ic32oc32_ih112iw112_kh3kw3_ph1w1', 'conv2d_mb1_g1ic32oc64_ih112iw112_kh1kw1')
    >>> SeparablePair.parse(pair.name()) == pair
    True
"""

from __future__ import annotations

from typing import NamedTuple

from . import names
from .conv import ConvSpec, _padding_mode, _shape, resolve_conv

_FIELDS = ("mb", "ic_oc", "in", "kernel", "stride", "dilation", "pads", "nhwc", "dtype")

# the pair's own tokens, as names.read takes them: (field, regex, value of the match)
_OWN_TOKENS = (
    ("multiplier", r"m(\d+)", lambda m: int(m.group(1))),
    ("padding_mode", r"pm(.+)", _padding_mode),
    ("depthwise_bias", r"dwbias", lambda m: True),
    ("depthwise_activation", r"dw(relu6?)", lambda m: m.group(1)),
    ("bias", r"bias", lambda m: True),
    ("activation", r"relu6?", lambda m: m.group(0)),
)


class SeparablePair(NamedTuple):
    """Depthwise k x k (channel multiplier M) then pointwise 1x1 on its output."""

    depthwise: ConvSpec
    pointwise: ConvSpec

    op = "separable_conv2d"

    def name(self) -> str:
        """``separable_conv2d_mb<N>_ic<C>oc<K>_i<sizes>_k<sizes>`` then, when not the default,
        ``m<M>`` (channel multiplier), stride, dilation, pads, ``pm<mode>``, ``dwbias``,
        ``dw<activation>``, ``bias``, ``<activation>`` (both of the pointwise step), layout, dtype."""
        d, p = self.depthwise, self.pointwise
        parts = ["separable_conv2d", f"mb{d.batch}", f"ic{d.in_channels}oc{p.out_channels}",
                 names.sizes("i", d.in_size), names.sizes("k", d.kernel)]
        multiplier = d.out_channels // d.in_channels
        if multiplier != 1:
            parts.append(f"m{multiplier}")
        if any(s != 1 for s in d.stride):
            parts.append(names.steps("s", d.stride))
        if any(v != 1 for v in d.dilation):
            parts.append(names.steps("d", d.dilation))
        if any(v != (0, 0) for v in d.pads):
            parts.append(names.pads(d.pads))
        if d.padding_mode != "zeros":
            parts.append("pm" + d.padding_mode + (f"{d.padding_value!r}" if d.padding_mode == "constant" else ""))
        if d.has_bias:
            parts.append("dwbias")
        if d.activation:
            parts.append(f"dw{d.activation}")
        if p.has_bias:
            parts.append("bias")
        if p.activation:
            parts.append(p.activation)
        return "_".join(parts + names.layout_dtype(d.channels_last, d.dtype))

    def __str__(self) -> str:
        return self.name()

    @classmethod
    def parse(cls, text: str) -> SeparablePair:
        """Read back a string made by :meth:`name`; tokens left out take the defaults."""
        where = f"SeparablePair.parse: {text!r}"
        if not text.startswith("separable_conv2d_"):
            raise ValueError(f"{where} does not start with separable_conv2d_")
        f = names.read(where, text[len("separable_conv2d_"):], 2, _FIELDS, _OWN_TOKENS)
        names.require(where, f, "ic_oc", "in", "kernel")
        (channels, out_channels), multiplier = f["ic_oc"], f.get("multiplier", 1)
        mode, value = f.get("padding_mode", ("zeros", 0.0))
        common = dict(channels_last=f.get("nhwc", False), dtype=f.get("dtype", "float32"))
        dw = resolve_conv("conv2d", _shape(f.get("mb", 1), channels, f["in"], common["channels_last"]),
                          (channels * multiplier, 1, *f["kernel"]), stride=f.get("stride", 1),
                          padding=f.get("pads", 0), dilation=f.get("dilation", 1), groups=channels,
                          padding_mode=mode, padding_value=value, has_bias=f.get("depthwise_bias", False),
                          activation=f.get("depthwise_activation"), **common)
        pw = resolve_conv("conv2d", dw.output_shape, (out_channels, channels * multiplier, 1, 1),
                          has_bias=f.get("bias", False), activation=f.get("activation"), **common)
        return cls(dw, pw)
