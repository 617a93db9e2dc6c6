"""Swap a model's torch.nn conv and pooling layers for their fastconv.torch.nn twins."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from .nn import TWINS


@dataclass
class ConvertReport:
    """What :func:`convert` did: ``swapped`` and ``left`` hold (qualified name, class name)
    of each layer it replaced and of each conv or pooling-like layer it left alone (a
    subclass of a supported class, whose forward may differ, or a class without a twin)."""

    swapped: list = field(default_factory=list)
    left: list = field(default_factory=list)

    def __str__(self):
        lines = [f"swapped {len(self.swapped)}, left {len(self.left)}"]
        lines += [f"  swapped {name}: {cls}" for name, cls in self.swapped]
        lines += [f"  left    {name}: {cls}" for name, cls in self.left]
        return "\n".join(lines)


def _twin(layer):
    """The fastconv twin of ``layer``: its attributes, hooks and the very same Parameter and
    buffer objects, in the twin class (whose extras take their defaults)."""
    cls = TWINS[type(layer)]
    twin = cls.__new__(cls)
    twin.__dict__.update(layer.__dict__)
    twin._parameters = dict(layer._parameters)
    twin._buffers = dict(layer._buffers)
    twin._modules = dict(layer._modules)
    return twin


def convert(module: torch.nn.Module, inplace: bool = False):
    """``(model, report)``: ``module`` with every layer whose type is exactly a supported
    torch.nn class (Conv1d-3d, ConvTranspose1d-3d, Max/Avg/LPPool1d-3d, AdaptiveAvg/MaxPool1d-3d)
    replaced by its fastconv.torch.nn twin. The twins share the original Parameters and
    buffers (an optimizer built on either model trains both). Without ``inplace`` the
    model's structure is copied first and ``module`` itself is unchanged; every other layer
    of the copy is a copy too, but all Parameters and buffers stay shared.

    LPPool layers become fastconv's Lp norm of each window, which differs from torch's on
    negative input for odd or fractional p and on edge windows with ceil_mode (README,
    "Where fastconv's semantics are its own"); they agree on non-negative input."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"convert: module must be a torch.nn.Module, got {type(module).__name__}")
    if not inplace:
        memo = {id(t): t for t in (*module.parameters(), *module.buffers())}
        module = copy.deepcopy(module, memo)
    report = ConvertReport()
    if type(module) in TWINS:
        report.swapped.append(("", type(module).__name__))
        return _twin(module), report
    _swap_children(module, "", report)
    return module, report


_KINDS = tuple(TWINS) + (torch.nn.modules.conv._ConvNd, torch.nn.modules.pooling._MaxPoolNd,
                         torch.nn.modules.pooling._AvgPoolNd, torch.nn.modules.pooling._LPPoolNd,
                         torch.nn.modules.pooling._AdaptiveAvgPoolNd, torch.nn.modules.pooling._AdaptiveMaxPoolNd,
                         torch.nn.modules.pooling._MaxUnpoolNd, torch.nn.FractionalMaxPool2d)


def _swap_children(module, prefix, report):
    for name, child in list(module.named_children()):
        qualified = f"{prefix}{name}"
        if type(child) in TWINS:
            setattr(module, name, _twin(child))
            report.swapped.append((qualified, type(child).__name__))
            continue
        if isinstance(child, _KINDS) and not isinstance(child, tuple(TWINS.values())):
            report.left.append((qualified, type(child).__name__))
        _swap_children(child, f"{qualified}.", report)
