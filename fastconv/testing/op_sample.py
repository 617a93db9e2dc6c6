"""OpSample: one call of a public op, as plain data, for tests that hold for every op.

An :class:`OpSample` is the op's name, the shapes of its array arguments (the first is
the input), its other arguments and tags. Tests that hold for every op (ndarray
subclasses, extreme integers, huge outputs) take the samples tagged ``every_op`` from
the registry (fastconv.testing.registry), one small call per op, so an op registered
there reaches all of them. ``geometry`` names the integer arguments that size windows
and outputs (what extreme-integer and huge-output tests vary); ``huge`` is an argument
change whose output cannot be allocated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class OpSample:
    op: str
    shapes: tuple  # shapes of the array arguments, input first
    kwargs: tuple = ()  # sorted (name, value) pairs
    dtype: str = "float32"
    geometry: tuple = ()  # names of integer geometry arguments in kwargs
    huge: tuple = ()  # (name, value) pairs giving an output of several GiB (at least 8)
    tags: frozenset = field(default_factory=frozenset)

    @property
    def args(self) -> dict:
        return dict(self.kwargs)

    def __str__(self) -> str:
        shape = "x".join(map(str, self.shapes[0]))
        extra = "_".join(f"{k}{v}" for k, v in self.kwargs).replace(" ", "")
        return f"{self.op}_{shape}" + (f"_{extra}" if extra else "")

    def arrays(self, rng: np.random.Generator) -> list:
        """The array arguments: normals in the sample's dtype (for max_unpool, the input that
        :meth:`call` max-pools to make the values and indices it unpools)."""
        dt = np.dtype(self.dtype)
        return [rng.standard_normal(s).astype(dt) for s in self.shapes]

    def call(self, fastconv, arrays, **changes):
        """Run the sample through ``fastconv`` (the module) on ``arrays``, with ``changes``
        to its keyword arguments."""
        kwargs = {**self.args, **changes}
        if self.op.startswith("max_unpool"):
            nd = int(self.op[-2])
            pool = getattr(fastconv, f"max_pool{nd}d")
            values, indices = pool(arrays[0], kwargs["kernel_size"], kwargs.get("stride"), kwargs.get("padding", 0),
                                   return_indices=True)
            return getattr(fastconv, self.op)(values, indices, **kwargs)
        return getattr(fastconv, self.op)(*arrays, **kwargs)


def op_sample(op, *shapes, dtype="float32", geometry=(), huge=(), tags=(), **kwargs) -> OpSample:
    """An OpSample tagged ``every_op`` (besides ``tags``)."""
    return OpSample(op, tuple(map(tuple, shapes)), tuple(sorted(kwargs.items())), dtype, tuple(geometry),
                    tuple(huge), frozenset(tags) | {"every_op"})
