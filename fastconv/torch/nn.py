"""torch.nn's convolution and pooling layers running fastconv's kernels.

Each class subclasses its torch.nn namesake and overrides ``forward`` only, so constructor
arguments and defaults, parameter initialisation, ``state_dict`` keys and ``repr`` are
torch's own and checkpoints load both ways. fastconv's extras are accepted on top:

- convolutions: ``padding`` as per-side ``(begin, end)`` pairs, ``"same"`` at any stride and
  ``"full"``; every ``padding_mode`` (``zeros``, ``constant`` with ``padding_value=``,
  ``reflect``, ``replicate``, ``circular``, ``symmetric``); keyword-only ``activation``
  (``None``, ``"relu"``, ``"relu6"``, fused after the bias) and ``algo``;
- pooling: ``padding`` pairs and ``"same"``; ``dilation=`` and ``padding=`` for average and
  Lp pooling.

torch's constructor does not know these extras, so it is given a stand-in (padding 0,
padding_mode "zeros") and the layer then keeps the value it was given.
"""

from __future__ import annotations

import torch

from . import functional as F

__all__ = [
    "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
    "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d",
    "LPPool1d", "LPPool2d", "LPPool3d",
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d",
    "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d",
]

_TORCH_MODES = ("zeros", "reflect", "replicate", "circular")


def _torch_padding(padding, transposed):
    """What torch's constructor accepts in place of ``padding``: the value itself when torch
    knows it, else 0."""
    if isinstance(padding, str):
        return padding if padding in ("valid", "same") and not transposed else 0
    if isinstance(padding, int) or all(isinstance(p, int) for p in padding):
        return padding
    return 0


def _own_padding(padding, nd):
    if isinstance(padding, str):
        return padding
    return (padding,) * nd if isinstance(padding, int) else tuple(padding)


class _Conv:
    _nd: int
    _transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 padding_mode="zeros", device=None, dtype=None, *, padding_value=0.0, activation=None, algo="auto"):
        try:
            super().__init__(in_channels, out_channels, kernel_size, stride, _torch_padding(padding, False), dilation,
                             groups, bias, padding_mode if padding_mode in _TORCH_MODES else "zeros", device, dtype)
        except ValueError as e:
            if "same" not in str(e):
                raise
            super().__init__(in_channels, out_channels, kernel_size, stride, 0, dilation, groups, bias,
                             padding_mode if padding_mode in _TORCH_MODES else "zeros", device, dtype)
        self.padding = _own_padding(padding, self._nd)
        self.padding_mode = padding_mode
        self.padding_value = padding_value
        self.activation = activation
        self.algo = algo

    def forward(self, input):
        return getattr(F, f"conv{self._nd}d")(
            input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups,
            padding_mode=self.padding_mode, padding_value=getattr(self, "padding_value", 0.0),
            algo=getattr(self, "algo", "auto"), activation=getattr(self, "activation", None))


class _ConvTranspose:
    _nd: int

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None, *, activation=None,
                 algo="auto"):
        super().__init__(in_channels, out_channels, kernel_size, stride, _torch_padding(padding, True),
                         output_padding, groups, bias, dilation, padding_mode, device, dtype)
        self.padding = _own_padding(padding, self._nd)
        self.activation = activation
        self.algo = algo

    def forward(self, input, output_size=None):
        return getattr(F, f"conv_transpose{self._nd}d")(
            input, self.weight, self.bias, self.stride, self.padding, self.output_padding, self.groups,
            self.dilation, algo=getattr(self, "algo", "auto"), activation=getattr(self, "activation", None),
            output_size=output_size)


class Conv1d(_Conv, torch.nn.Conv1d):
    _nd = 1


class Conv2d(_Conv, torch.nn.Conv2d):
    _nd = 2


class Conv3d(_Conv, torch.nn.Conv3d):
    _nd = 3


class ConvTranspose1d(_ConvTranspose, torch.nn.ConvTranspose1d):
    _nd = 1


class ConvTranspose2d(_ConvTranspose, torch.nn.ConvTranspose2d):
    _nd = 2


class ConvTranspose3d(_ConvTranspose, torch.nn.ConvTranspose3d):
    _nd = 3


# ---- pooling ------------------------------------------------------------------------------

class _MaxPool:
    _nd: int

    def forward(self, input):
        return getattr(F, f"max_pool{self._nd}d")(input, self.kernel_size, self.stride, self.padding, self.dilation,
                                                   self.ceil_mode, self.return_indices)


class _AvgPool:
    _nd: int

    def __init__(self, *args, dilation=1, **kwargs):
        super().__init__(*args, **kwargs)
        self.dilation = dilation

    def forward(self, input):
        return getattr(F, f"avg_pool{self._nd}d")(
            input, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad,
            getattr(self, "divisor_override", None), dilation=getattr(self, "dilation", 1))


class _LPPool:
    _nd: int

    def __init__(self, *args, padding=0, dilation=1, **kwargs):
        super().__init__(*args, **kwargs)
        self.padding = padding
        self.dilation = dilation

    def forward(self, input):
        return getattr(F, f"lp_pool{self._nd}d")(
            input, self.norm_type, self.kernel_size, self.stride, self.ceil_mode,
            padding=getattr(self, "padding", 0), dilation=getattr(self, "dilation", 1))


class _AdaptiveAvgPool:
    _nd: int

    def forward(self, input):
        return getattr(F, f"adaptive_avg_pool{self._nd}d")(input, self.output_size)


class _AdaptiveMaxPool:
    _nd: int

    def forward(self, input):
        return getattr(F, f"adaptive_max_pool{self._nd}d")(input, self.output_size, self.return_indices)


class MaxPool1d(_MaxPool, torch.nn.MaxPool1d):
    _nd = 1


class MaxPool2d(_MaxPool, torch.nn.MaxPool2d):
    _nd = 2


class MaxPool3d(_MaxPool, torch.nn.MaxPool3d):
    _nd = 3


class AvgPool1d(_AvgPool, torch.nn.AvgPool1d):
    _nd = 1


class AvgPool2d(_AvgPool, torch.nn.AvgPool2d):
    _nd = 2


class AvgPool3d(_AvgPool, torch.nn.AvgPool3d):
    _nd = 3


class LPPool1d(_LPPool, torch.nn.LPPool1d):
    _nd = 1


class LPPool2d(_LPPool, torch.nn.LPPool2d):
    _nd = 2


class LPPool3d(_LPPool, torch.nn.LPPool3d):
    _nd = 3


class AdaptiveAvgPool1d(_AdaptiveAvgPool, torch.nn.AdaptiveAvgPool1d):
    _nd = 1


class AdaptiveAvgPool2d(_AdaptiveAvgPool, torch.nn.AdaptiveAvgPool2d):
    _nd = 2


class AdaptiveAvgPool3d(_AdaptiveAvgPool, torch.nn.AdaptiveAvgPool3d):
    _nd = 3


class AdaptiveMaxPool1d(_AdaptiveMaxPool, torch.nn.AdaptiveMaxPool1d):
    _nd = 1


class AdaptiveMaxPool2d(_AdaptiveMaxPool, torch.nn.AdaptiveMaxPool2d):
    _nd = 2


class AdaptiveMaxPool3d(_AdaptiveMaxPool, torch.nn.AdaptiveMaxPool3d):
    _nd = 3


TWINS = {getattr(torch.nn, name): globals()[name] for name in __all__}
