"""The op registry (OpInfo style): per public op, its samples, its error inputs, its
reference and its tolerances, shared by tests/ and bench/.

A family module registers its ops with :func:`register_op`; every module of this package
whose name ends in ``_samples`` is such a module and is imported on the first lookup, so
a new family (the gradients, say) is one new ``<family>_samples.py`` calling
``register_op(OpInfo(...))``, with no edit here. Tests select samples by op, family and
tag, never by position in a list:

    >>> from fastconv.testing.registry import op_info, samples
    >>> [str(s) for s in samples(family="pool", tags={"lp", "every_op"})]
    ['lp_pool2d_1x2x6x6_kernel_size2_norm_type2.0']
    >>> op_info("lp_pool2d").tolerance("float32")
    {'rtol': 5e-05, 'atol': 5e-05}
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from . import tolerances


@dataclass(frozen=True)
class ErrorInput:
    """A call of ``op`` that must fail: ``call(fastconv)`` (the module is passed in) raises
    ``error`` with a message matching ``match`` (a regex, searched as pytest.raises does)."""

    op: str
    name: str
    call: Callable
    error: type
    match: str
    tags: frozenset = frozenset()

    def __str__(self) -> str:
        return self.name


def error_input(op, name, call, error, match, tags=()) -> ErrorInput:
    return ErrorInput(op, name, call, error, match, frozenset(tags))


@dataclass(frozen=True)
class OpInfo:
    """One public op: ``samples()`` and ``error_inputs()`` build their lists on demand
    (cheap, but kept out of import time); ``reference`` is the NumPy ground truth
    (fastconv.reference) where one function serves the op; ``tolerances`` maps a dtype
    name to rtol/atol overriding the family's (fastconv.testing.tolerances)."""

    name: str
    family: str  # "conv", "pool", "window", "separable", "grad", ...
    samples: Callable[[], list] = list
    error_inputs: Callable[[], list[ErrorInput]] = list
    reference: Callable | None = None
    tolerances: dict = field(default_factory=dict)

    def tolerance(self, dtype) -> dict:
        import numpy as np

        return self.tolerances.get(np.dtype(dtype).name) or tolerances.tolerance(self.family, dtype)


_OPS: dict[str, OpInfo] = {}
_LOADED = False


def register_op(info: OpInfo) -> OpInfo:
    """Add ``info``; a second registration of the same op name is a mistake and raises."""
    if info.name in _OPS and _OPS[info.name] is not info:
        raise ValueError(f"register_op: {info.name!r} is registered already (family {_OPS[info.name].family!r})")
    _OPS[info.name] = info
    return info


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    package = __name__.rsplit(".", 1)[0]
    for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if module.name.endswith("_samples"):
            importlib.import_module(f"{package}.{module.name}")


def ops(family: str | None = None) -> list[OpInfo]:
    """Every registered op (of ``family``), in registration order."""
    _load()
    return [o for o in _OPS.values() if family is None or o.family == family]


def op_info(name: str) -> OpInfo:
    _load()
    if name not in _OPS:
        raise KeyError(f"op_info: no op {name!r} is registered; registered: {', '.join(_OPS)}")
    return _OPS[name]


def _chosen(items: Iterable, tags, exclude) -> list:
    tags, exclude = frozenset(tags), frozenset(exclude)
    return [s for s in items if tags <= s.tags and not exclude & s.tags]


def samples(op: str | None = None, *, family: str | None = None, tags: Iterable[str] = (),
            exclude: Iterable[str] = ()) -> list:
    """Samples of ``op`` (or of every op of ``family``, or of all ops) that carry every tag
    in ``tags`` and none in ``exclude``; no sample appears twice."""
    infos = [op_info(op)] if op else ops(family)
    seen, out = set(), []
    for info in infos:
        for s in info.samples():
            if id(s) not in seen:
                seen.add(id(s))
                out.append(s)
    return _chosen(out, tags, exclude)


def error_inputs(op: str | None = None, *, family: str | None = None, tags: Iterable[str] = (),
                 exclude: Iterable[str] = ()) -> list[ErrorInput]:
    """Error inputs of ``op`` (or of every op of ``family``, or of all ops) carrying every tag
    in ``tags`` and none in ``exclude``."""
    infos = [op_info(op)] if op else ops(family)
    return _chosen([e for info in infos for e in info.error_inputs()], tags, exclude)
