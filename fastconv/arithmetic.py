"""Convolution arithmetic without running anything: output shapes, FLOPs, parameter
counts and receptive fields.

Shapes, FLOPs and parameters come from :class:`fastconv.spec.ConvSpec` (built by
``resolve_conv``), the same object the kernels and benchmarks use, so they agree with
what ``conv*d`` / ``conv_transpose*d`` actually do, padding forms and errors included.
No Numba here: importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ._args import int_tuple, is_int, padding_pairs
from .spec.conv import resolve_conv

__all__ = ["conv_flops", "conv_output_shape", "conv_params", "receptive_field"]


def _shape(fn: str, name: str, value) -> tuple:
    """A shape given as a sequence of ints (or an object with ``.shape``)."""
    if hasattr(value, "shape") and not isinstance(value, (Sequence, str)):
        value = value.shape
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError(f"{fn}: {name} must be a sequence of ints, got {type(value).__name__}")
    if not all(is_int(v) for v in value):
        raise TypeError(f"{fn}: {name}={tuple(value)!r} must hold ints only")
    if any(v < 0 for v in value):
        raise ValueError(f"{fn}: {name}={tuple(value)!r} must not hold negative sizes")
    return tuple(int(v) for v in value)


def _conv_spec(input_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1, *,
              transposed=False, output_padding=0, output_size=None, channels_last=False,
              bias=False, fn="conv_output_shape"):
    """(ConvSpec, unbatched) of a convolution; the dimensionality is ``len(weight_shape) - 2``.

    An ``input_shape`` with one dim fewer than a batched input is unbatched (as PyTorch
    accepts); it is resolved with batch 1.
    """
    wshape = _shape(fn, "weight_shape", weight_shape)
    ishape = _shape(fn, "input_shape", input_shape)
    nd = len(wshape) - 2
    if nd not in (1, 2, 3):
        raise ValueError(
            f"{fn}: weight_shape={wshape} must have 3, 4 or 5 dims (out, in/groups, *kernel)"
        )
    unbatched = len(ishape) == nd + 1
    if unbatched:
        ishape = (1, *ishape)
    op = f"conv_transpose{nd}d" if transposed else f"conv{nd}d"
    extra = dict(output_padding=output_padding, output_size=output_size) if transposed else {}
    if not transposed and (output_size is not None or output_padding not in (0, None)):
        raise ValueError(f"{fn}: output_padding and output_size need transposed=True")
    spec = resolve_conv(op, ishape, wshape, stride=stride, padding=padding, dilation=dilation,
                        groups=groups, has_bias=bool(bias), channels_last=channels_last, **extra)
    return spec, unbatched


def conv_output_shape(input_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1, *,
                      transposed=False, output_padding=0, output_size=None, channels_last=False):
    """Output shape of ``conv{N}d`` (or ``conv_transpose{N}d`` with ``transposed=True``).

    Arguments as the conv ops take them (every padding form; ``channels_last`` reads
    and returns the channels-last layout). Unbatched input gives an unbatched shape.

    >>> conv_output_shape((1, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=3)
    (1, 64, 112, 112)
    >>> conv_output_shape((1, 64, 7, 7), (64, 32, 4, 4), stride=2, padding=1, transposed=True)
    (1, 32, 14, 14)
    """
    spec, unbatched = _conv_spec(input_shape, weight_shape, stride, padding, dilation, groups,
                                transposed=transposed, output_padding=output_padding,
                                output_size=output_size, channels_last=channels_last,
                                fn="conv_output_shape")
    return spec.output_shape[1:] if unbatched else spec.output_shape


def conv_flops(input_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1, *,
               transposed=False, output_padding=0, output_size=None, channels_last=False,
               bias=False):
    """FLOPs of one convolution call: 2 * MACs, plus one add per output element with a bias.

    MACs count every (output element, kernel tap, input channel of its group) product of
    the dense formulation, taps over padding included (the count every dense algorithm
    performs): N * K * prod(out) * C/groups * prod(kernel). For a transposed conv they
    count each input element against its K/groups * prod(kernel) outputs.

    >>> conv_flops((1, 64, 56, 56), (64, 64, 3, 3), padding=1)
    231211008
    """
    spec, _ = _conv_spec(input_shape, weight_shape, stride, padding, dilation, groups,
                        transposed=transposed, output_padding=output_padding,
                        output_size=output_size, channels_last=channels_last, bias=bias,
                        fn="conv_flops")
    return spec.flops


def conv_params(weight_shape, bias=True, *, groups=1, transposed=False):
    """Learnable parameters: prod(weight_shape) plus one bias per output channel.

    Output channels are ``weight_shape[0]`` for a conv and ``weight_shape[1] * groups``
    for a transposed conv (PyTorch's weight layouts).

    >>> conv_params((64, 3, 7, 7), bias=False)
    9408
    """
    wshape = _shape("conv_params", "weight_shape", weight_shape)
    nd = len(wshape) - 2
    if nd not in (1, 2, 3):
        raise ValueError(
            f"conv_params: weight_shape={wshape} must have 3, 4 or 5 dims (out, in/groups, *kernel)"
        )
    if not is_int(groups):
        raise TypeError(f"conv_params: groups must be an int, got {type(groups).__name__}")
    if groups < 1:
        raise ValueError(f"conv_params: groups={groups} must be >= 1")
    # A smallest input the weight fits, so the parameter count comes from the spec.
    channels = wshape[0] if transposed else wshape[1] * groups
    spec, _ = _conv_spec((1, channels, *wshape[2:]), wshape, groups=groups, transposed=transposed,
                        bias=bias, fn="conv_params")
    return spec.params


# ---- receptive field -----------------------------------------------------------------

_KERNEL_KEYS = ("kernel_size", "kernel")


def _layer_fields(index, layer):
    """(kernel, stride, dilation, padding) of one layer description."""
    where = f"receptive_field: layers[{index}]"
    if isinstance(layer, Mapping):
        key = next((k for k in _KERNEL_KEYS if k in layer), None)
        if key is None:
            raise ValueError(f"{where}={layer!r} has no 'kernel_size' (or 'kernel') entry")
        unknown = set(layer) - {*_KERNEL_KEYS, "stride", "dilation", "padding"}
        if unknown:
            raise ValueError(f"{where} has unknown keys {sorted(unknown)}; expected kernel_size, "
                             f"stride, dilation, padding")
        return layer[key], layer.get("stride", 1), layer.get("dilation", 1), layer.get("padding", 0)
    if hasattr(layer, "kernel") and hasattr(layer, "stride") and hasattr(layer, "pads"):
        if getattr(layer, "transposed", False):
            raise ValueError(f"{where} is a transposed convolution; its receptive field is not "
                             f"given by this recurrence")
        return layer.kernel, layer.stride, layer.dilation, layer.pads
    if isinstance(layer, Sequence) and not isinstance(layer, str) and len(layer) in (1, 2, 3, 4):
        fields = tuple(layer) + (1, 1, 0)[len(layer) - 1:]
        return fields[:4]
    raise TypeError(
        f"{where}={layer!r} must be a (kernel, stride, dilation[, padding]) tuple, a dict with "
        f"kernel_size/stride/dilation/padding, or a ConvSpec/PoolSpec"
    )


def _layer_nd(fields):
    for value in fields[:3]:
        if isinstance(value, Sequence) and not isinstance(value, str) and len(value) > 1:
            return len(value)
    return None


def _begin_pads(index, padding, kernel, stride, dilation):
    nd = len(kernel)
    where = f"receptive_field: layers[{index}]"
    pads = padding_pairs(where, padding, nd)
    if pads == "valid":
        return (0,) * nd
    if pads == "full":
        return tuple(d * (k - 1) for k, d in zip(kernel, dilation))
    if pads == "same":
        if any(s != 1 for s in stride):
            raise ValueError(f"{where}: padding='same' with stride {stride} depends on the input "
                             f"size; give the pads explicitly")
        return tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
    return tuple(b for b, _ in pads)


def receptive_field(layers, nd=None):
    """Receptive field of a stack of sliding-window layers (convs, pools), per spatial dim.

    ``layers``: a sequence of ``(kernel, stride, dilation)`` or
    ``(kernel, stride, dilation, padding)`` tuples, dicts with ``kernel_size`` (or
    ``kernel``), ``stride``, ``dilation``, ``padding`` (defaults 1, 1, 0; a ``stride`` of
    None means the kernel, as pooling), or ConvSpec/PoolSpec objects. Each value is an int
    or one int per dim; ``padding`` also takes (begin, end) pairs, "valid", "full", and
    "same" (stride 1 only). ``nd`` defaults to the length of the tuples given, else 1.

    With layer l's kernel k, stride s, dilation d and begin padding p, starting from
    ``size_0 = 1``, ``jump_0 = 1``, ``start_0 = 0``:

        size_l  = size_{l-1} + (k - 1) * d * jump_{l-1}
        jump_l  = jump_{l-1} * s
        start_l = start_{l-1} - p * jump_{l-1}

    Returns a dict of tuples (one entry per dim):
      ``size``   input pixels one output element sees (the receptive field),
      ``jump``   input distance between neighbouring outputs (the effective stride),
      ``start``  input index of the first pixel output 0 sees (negative: in padding),
      ``center`` input coordinate of that field's centre, ``start + (size - 1) / 2``.
    Output i of the last layer sees inputs ``start + i * jump`` .. ``+ size - 1``.

    >>> receptive_field([(3, 1, 1), (3, 1, 1)])["size"]
    (5,)
    >>> rf = receptive_field([dict(kernel_size=7, stride=2, padding=3),
    ...                       dict(kernel_size=3, stride=2, padding=1)], nd=2)
    >>> rf["size"], rf["jump"], rf["start"]
    ((11, 11), (4, 4), (-5, -5))
    """
    if isinstance(layers, (str, Mapping)) or not isinstance(layers, Sequence):
        raise TypeError(f"receptive_field: layers must be a sequence of layers, got {type(layers).__name__}")
    described = [_layer_fields(i, layer) for i, layer in enumerate(layers)]
    if nd is None:
        found = {n for n in map(_layer_nd, described) if n is not None}
        if len(found) > 1:
            raise ValueError(f"receptive_field: layers mix tuples of lengths {sorted(found)}; "
                             f"give one int per spatial dim consistently")
        nd = found.pop() if found else 1
    if not is_int(nd) or nd < 1:
        raise ValueError(f"receptive_field: nd={nd!r} must be a positive int")
    size, jump, start = [1] * nd, [1] * nd, [0] * nd
    for i, (kernel, stride, dilation, padding) in enumerate(described):
        where = f"receptive_field: layers[{i}]"
        kernel = int_tuple(where, "kernel", kernel, nd)
        stride = kernel if stride is None else int_tuple(where, "stride", stride, nd)
        dilation = int_tuple(where, "dilation", dilation, nd)
        begin = _begin_pads(i, padding, kernel, stride, dilation)
        for a in range(nd):
            size[a] += (kernel[a] - 1) * dilation[a] * jump[a]
            start[a] -= begin[a] * jump[a]
            jump[a] *= stride[a]
    return {
        "size": tuple(size),
        "jump": tuple(jump),
        "start": tuple(start),
        "center": tuple(s + (r - 1) / 2 for s, r in zip(start, size)),
    }

