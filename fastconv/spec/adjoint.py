"""The adjoint convolutions that compute input gradients, as specs for the forward table.

A conv's input gradient is the transposed conv of its grad_output with the same weight
and geometry; output_padding makes the result as large as the input (the rows the
forward stride skipped at the end). A transposed conv's input gradient is the forward
conv of its grad_output, same geometry. Both backends' "conv_input_grad" kernels run
these through dispatch, so the geometry is decided here once.
"""

from __future__ import annotations

from .._cache import cached_plan
from .conv import ConvSpec, resolve_conv


def _grad_output_shape(spec: ConvSpec, channels_last: bool) -> tuple:
    if channels_last:
        return (spec.batch, *spec.out_size, spec.out_channels)
    return (spec.batch, spec.out_channels, *spec.out_size)


def adjoint_transpose_spec(spec: ConvSpec, pads, out_size, channels_last: bool, dtype: str) -> ConvSpec:
    """The transposed conv that maps a grad_output of the forward conv ``spec`` to ``out_size``,
    cropping ``pads`` (the forward's pads, or none for the gradient w.r.t. the padded input)."""
    output_padding = tuple(
        n - ((o - 1) * s + d * (k - 1) + 1 - b - e)
        for n, o, k, s, d, (b, e) in zip(out_size, spec.out_size, spec.kernel, spec.stride, spec.dilation, pads)
    )
    return resolve_conv(f"conv_transpose{spec.nd}d", _grad_output_shape(spec, channels_last), spec.weight_shape,
                        stride=spec.stride, padding=pads, output_padding=output_padding, groups=spec.groups,
                        dilation=spec.dilation, channels_last=channels_last, dtype=dtype)


def adjoint_conv_spec(spec: ConvSpec) -> ConvSpec:
    """The forward conv of a transposed conv's grad_output (same weight and geometry). With
    output_padding of a whole stride or more (allowed while below the dilation) it has more
    outputs than the transposed conv has inputs; the extra ones are cut off."""
    return resolve_conv(f"conv{spec.nd}d", _grad_output_shape(spec, spec.channels_last), spec.weight_shape,
                        stride=spec.stride, padding=spec.pads, dilation=spec.dilation, groups=spec.groups,
                        channels_last=spec.channels_last, dtype=spec.dtype)


@cached_plan
def flipped_conv_spec(spec: ConvSpec) -> ConvSpec | None:
    """The forward conv that computes a stride-1 conv's input gradient (:func:`swapped_conv_spec`)
    where that is the same conv family: one output channel per group, so the weight keeps its
    shape and only its taps flip; None elsewhere. Lets depthwise layers' input gradient run the
    forward depthwise kernel, which reads the user's layout in place, instead of the transposed
    conv's grouped machinery."""
    return swapped_conv_spec(spec) if spec.out_per_group == 1 else None


@cached_plan
def swapped_conv_spec(spec: ConvSpec) -> ConvSpec | None:
    """The forward conv that computes a stride-1 conv's input gradient: grad_output convolved
    with the spatially flipped weight, its channel axes swapped ((C, K/G, *k)), padded by the
    dilated kernel's span minus the forward's pads. Stride 1 and the crop inside the span
    (pads >= 0) only; None elsewhere. Kept in the plan cache: resolving a spec costs as much as
    a small layer's kernel."""
    if spec.transposed or any(s != 1 for s in spec.stride):
        return None
    pads = tuple((d * (k - 1) - b, d * (k - 1) - e) for k, d, (b, e) in zip(spec.kernel, spec.dilation, spec.pads))
    if any(b < 0 or e < 0 for b, e in pads):
        return None
    weight_shape = (spec.in_channels, spec.out_per_group, *spec.kernel)
    return resolve_conv(f"conv{spec.nd}d", _grad_output_shape(spec, spec.channels_last), weight_shape,
                        padding=pads, dilation=spec.dilation, groups=spec.groups,
                        channels_last=spec.channels_last, dtype=spec.dtype)


def padded_size(spec: ConvSpec) -> tuple:
    return tuple(n + b + e for n, (b, e) in zip(spec.in_size, spec.pads))


def cut_index(spec: ConvSpec) -> tuple:
    """The index that cuts an adjoint conv's output (user layout) to the transposed conv's input."""
    spatial = tuple(slice(0, n) for n in spec.in_size)
    return (slice(None), *spatial, slice(None)) if spec.channels_last else (slice(None), slice(None), *spatial)
