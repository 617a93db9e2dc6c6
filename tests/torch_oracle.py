"""PyTorch as the second oracle: the same call expressed with torch.nn.functional.

Per-side pads and padding modes go through F.pad; transposed per-side crops are cut
from torch's full output. Returns None when torch has no answer (symmetric mode,
reflect pads not smaller than the input).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as TF

_TORCH_MODE = {"zeros": "constant", "constant": "constant", "reflect": "reflect", "replicate": "replicate",
               "circular": "circular"}


def _flat_pads(pads):
    """((b, e) per dim) -> F.pad's order: last dim first."""
    return [v for b, e in reversed(pads) for v in (b, e)]


def _activation(y, activation):
    if activation == "relu":
        return torch.relu(y)
    if activation == "relu6":
        return torch.clamp(y, 0, 6)
    return y


def has_answer(spec) -> bool:
    """False where torch has no answer: symmetric padding, reflect pads not smaller than the
    input, circular pads larger than it."""
    mode = spec.padding_mode
    if mode not in _TORCH_MODE:
        return False
    return not any(mode == "reflect" and max(pb, pe) >= n or mode == "circular" and max(pb, pe) > n
                   for n, (pb, pe) in zip(spec.in_size, spec.pads))


def conv(spec, x, w, b):
    """Forward conv (channels-first NumPy arrays) as torch computes it, in float64; None
    where torch has no answer (``has_answer``)."""
    if not has_answer(spec):
        return None
    mode = spec.padding_mode
    xt = torch.from_numpy(np.asarray(x, np.float64))
    if any(p != (0, 0) for p in spec.pads):
        kwargs = {"value": spec.padding_value} if mode in ("zeros", "constant") else {}
        if mode == "zeros":
            kwargs = {"value": 0.0}
        xt = TF.pad(xt, _flat_pads(spec.pads), mode=_TORCH_MODE[mode], **kwargs)
    fn = {1: TF.conv1d, 2: TF.conv2d, 3: TF.conv3d}[spec.nd]
    y = fn(xt, torch.from_numpy(np.asarray(w, np.float64)),
           None if b is None else torch.from_numpy(np.asarray(b, np.float64)),
           stride=spec.stride, padding=0, dilation=spec.dilation, groups=spec.groups)
    return _activation(y, spec.activation).numpy()


def conv_transpose(spec, x, w, b):
    """Transposed conv: torch's full output, cropped or zero-extended per side, then bias."""
    fn = {1: TF.conv_transpose1d, 2: TF.conv_transpose2d, 3: TF.conv_transpose3d}[spec.nd]
    full = fn(torch.from_numpy(np.asarray(x, np.float64)), torch.from_numpy(np.asarray(w, np.float64)), None,
              stride=spec.stride, padding=0, output_padding=0, groups=spec.groups, dilation=spec.dilation).numpy()
    out = np.zeros(full.shape[:2] + tuple(spec.out_size))
    src, dst = [slice(None)] * 2, [slice(None)] * 2
    for n_full, (pb, _), n_out in zip(full.shape[2:], spec.pads, spec.out_size):
        lo, hi = pb, min(pb + n_out, n_full)
        src.append(slice(lo, hi))
        dst.append(slice(0, hi - lo))
    out[tuple(dst)] = full[tuple(src)]
    if b is not None:
        out += np.asarray(b, np.float64).reshape((1, -1) + (1,) * spec.nd)
    return _activation(torch.from_numpy(out), spec.activation).numpy()


def conv_input_grad(spec, x, w):
    """Gradient of the forward conv described by ``spec`` w.r.t. its input, given ``x`` as grad_output."""
    fn = {1: torch.nn.grad.conv1d_input, 2: torch.nn.grad.conv2d_input, 3: torch.nn.grad.conv3d_input}[spec.nd]
    pads = tuple(b for b, _ in spec.pads)
    return fn((spec.batch, spec.in_channels, *spec.in_size), torch.from_numpy(np.asarray(w, np.float64)),
              torch.from_numpy(np.asarray(x, np.float64)), stride=spec.stride, padding=pads,
              dilation=spec.dilation, groups=spec.groups).numpy()
