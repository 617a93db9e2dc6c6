"""What every benchmark problem is: the ``Problem`` interface, layouts, ``Unsupported``."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

LAYOUTS = ("nchw", "nhwc")


class Unsupported(Exception):
    """This implementation cannot run this problem (the message says why)."""


@dataclass(frozen=True)
class Problem:
    """Base: subclasses set ``op`` and the spec(s); everything else derives from them."""

    kind = "abstract"

    # -- identity -------------------------------------------------------------------
    def name(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.name()

    @property
    def nd(self) -> int:
        return self.spec.nd

    @property
    def dtype(self) -> str:
        return self.spec.dtype

    @property
    def batch(self) -> int:
        return self.spec.batch

    # -- arithmetic (from the library's specs) ---------------------------------------
    @property
    def flops(self) -> int:
        return sum(s.flops for s in self.specs)

    @property
    def min_bytes(self) -> int:
        return sum(s.min_bytes for s in self.specs)

    @property
    def intensity(self) -> float:
        return self.flops / max(self.min_bytes, 1)

    @property
    def specs(self) -> tuple:
        return (self.spec,)

    def spec_for(self, layout: str):
        """The library's spec of this problem in ``layout`` (the first, for composites)."""
        return with_layout(self.spec, layout)

    def describe(self) -> dict:
        """What the result file records about the problem (layout-free)."""
        return {"name": self.name(), "op": self.op, "kind": self.kind, "nd": self.nd,
                "dtype": self.dtype, "batch": self.batch, "flops": self.flops,
                "min_bytes": self.min_bytes, "intensity": self.intensity,
                "parts": [s.name() for s in self.specs] if len(self.specs) > 1 else [],
                **self._facts()}

    def _facts(self) -> dict:
        return {}

    # -- data ------------------------------------------------------------------------
    def array_shapes(self, layout: str) -> list[tuple]:
        """Shapes of the fastconv call's array arguments (input first)."""
        return [tuple(self.spec_for(layout).input_shape)]

    def set_bytes(self, layout: str = "nchw") -> int:
        item = np.dtype(self.dtype).itemsize
        return sum(math.prod(s) for s in self.array_shapes(layout)) * item

    def make_arrays(self, rng: np.random.Generator) -> tuple:
        """One set of fresh NumPy arguments in NCHW (weights scaled by 1/sqrt(fan-in))."""
        dt = np.dtype(self.dtype)
        shapes = self.array_shapes("nchw")
        arrays = [rng.standard_normal(shapes[0], dtype=np.float64).astype(dt)]
        for shape in shapes[1:]:
            fan_in = math.prod(shape[1:])
            arrays.append((rng.standard_normal(shape) / math.sqrt(fan_in)).astype(dt))
        return tuple(arrays)

    @staticmethod
    def in_layout(arrays: tuple, layout: str) -> tuple:
        """The same values as fastconv takes them in ``layout`` (a channels-last copy of the input)."""
        if layout == "nchw":
            return arrays
        return (np.ascontiguousarray(np.moveaxis(arrays[0], 1, -1)), *arrays[1:])

    def torch_arrays(self, arrays: tuple, layout: str) -> tuple:
        """PyTorch tensors for the same data, sharing memory where the layout allows."""
        import torch

        x = torch.from_numpy(arrays[0])
        if layout == "nhwc":
            x = x.movedim(-1, 1)  # (N, C, *spatial) view with channels-last strides
        return (x, *(self._torch_weight(torch.from_numpy(a), layout) for a in arrays[1:]))

    def _torch_weight(self, w, layout):
        # A channels_last model (model.to(memory_format=...)) holds its weights channels-last.
        fmt = _torch_memory_format(w.dim(), layout)
        return w.contiguous(memory_format=fmt) if fmt is not None else w

    # -- callables -------------------------------------------------------------------
    def algorithms(self, layout: str) -> list[str]:
        """fastconv algorithms that can serve this problem in ``layout``."""
        raise NotImplementedError

    def auto_algorithm(self, layout: str) -> str | None:
        """The algorithm ``algo="auto"`` runs, when it is one of :meth:`algorithms`."""
        return None

    def auto_label(self, layout: str) -> str | None:
        """What ``algo="auto"`` runs, for the record ("depthwise+im2col" for a composite)."""
        return self.auto_algorithm(layout)

    def fastconv_fn(self, algo: str, layout: str):
        """``fn(*arrays)`` running fastconv with ``algo`` ("auto" allowed) in ``layout``."""
        raise NotImplementedError

    def torch_fn(self, layout: str):
        """``fn(*tensors)`` running PyTorch in ``layout``; raises Unsupported if it cannot."""
        raise NotImplementedError

    def torch_note(self, layout: str) -> str:
        """How the PyTorch row runs, when it is not one plain ``torch.nn.functional`` call."""
        return ""

    def output_nchw(self, result, layout: str, library: str) -> np.ndarray:
        """A result as a float64 NumPy array in (N, C, *spatial) order, for checking."""
        if library == "torch":
            result = result.detach().contiguous().numpy()
            return result.astype(np.float64)
        result = np.asarray(result, dtype=np.float64)
        if layout == "nhwc" and result.ndim >= 3:
            result = np.moveaxis(result, -1, 1)
        return result

    def check_order_insensitive(self) -> bool:
        return False


def with_layout(spec, layout: str):
    """``spec`` in ``layout`` ("nchw" or "nhwc")."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    cl = layout == "nhwc"
    return spec if spec.channels_last == cl else replace(spec, channels_last=cl)


def _torch_memory_format(ndim: int, layout: str):
    if layout != "nhwc":
        return None
    import torch

    return {4: torch.channels_last, 5: torch.channels_last_3d}.get(ndim)
