"""Timing that can be trusted: budgets, interleaving, fresh inputs, median and IQR.

The procedure for one problem (all its candidates: every fastconv algorithm and
PyTorch, in every layout, measured together in this process):

1. **First call**, per candidate, timed on its own and reported apart: for fastconv it
   includes Numba's JIT compilation (or loading from Numba's on-disk cache); the time
   spent in ``Dispatcher.compile`` during that call is ``compile_s``, and the new
   specialisations are counted as compiled or loaded from the cache. PyTorch's first
   call includes oneDNN's primitive creation.
2. **Warm-up** as a time budget: the candidates take turns, one call each, until every
   one has run for ``warmup_s`` (at least one call). The mean warm-up call sets how
   many timed calls fit the measurement budget.
3. **Measurement**: ``reps = clamp(measure_s / warm-up mean, min_reps, max_reps)`` per
   candidate, split into ``rounds`` interleaved rounds; in each round every candidate
   runs a block of its calls, the order rotating from round to round, so slow drifts
   (other processes, clock frequency) fall on all candidates alike.
4. Every call reads the next argument set of a **pool of buffers**, big enough
   (``pool_bytes``) that a small layer's data are not still in L1/L2 from the previous
   call; the pool index advances across candidates, so PyTorch never reads the data
   fastconv has just touched, and the other way round.
5. Each call is timed on its own with ``time.perf_counter`` (the cheapest calls here
   take tens of microseconds, far above its resolution); the garbage collector is off
   while timing. Statistics: median and interquartile range (25th-75th percentile).

Everything takes a ``clock`` so the tests can drive it with a fake one.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class Budget:
    warmup_s: float = 0.3  # per candidate
    measure_s: float = 2.0  # per candidate
    min_reps: int = 10
    max_reps: int = 2000
    rounds: int = 10

    def to_json(self) -> dict:
        return asdict(self)


QUICK = Budget(warmup_s=0.05, measure_s=0.25, min_reps=5, max_reps=200, rounds=5)
FULL = Budget()


@dataclass
class Candidate:
    """One thing to time: ``fn(i)`` runs it on argument set ``i`` of its pool."""

    key: str
    fn: Callable[[int], object]
    pool_size: int = 1
    is_numba: bool = False  # watch Numba's compile events on the first call


@dataclass
class Measurement:
    key: str
    first_call_s: float | None = None
    jit: dict = field(default_factory=dict)
    warmup_calls: int = 0
    warmup_s: float = 0.0
    samples_s: list = field(default_factory=list)
    error: str | None = None
    first_result: object = None

    @property
    def stats(self) -> dict:
        return summarize(self.samples_s)


def summarize(samples) -> dict:
    """Median, quartiles, IQR, mean, min, max and count of a list of seconds."""
    if len(samples) == 0:
        return {"n": 0}
    a = np.asarray(samples, dtype=np.float64)
    q1, median, q3 = np.percentile(a, [25, 50, 75])
    return {"n": int(a.size), "median_s": float(median), "q1_s": float(q1), "q3_s": float(q3),
            "iqr_s": float(q3 - q1), "mean_s": float(a.mean()), "min_s": float(a.min()),
            "max_s": float(a.max())}


def reps_for(estimate_s: float, budget: Budget) -> int:
    """Timed calls that fit ``budget.measure_s`` at ``estimate_s`` a call, clamped."""
    if estimate_s <= 0:
        return budget.max_reps
    return int(min(max(math.ceil(budget.measure_s / estimate_s), budget.min_reps), budget.max_reps))


class _Turns:
    """The global argument-set counter: every call takes the next set of its pool."""

    def __init__(self):
        self.count = 0

    def next(self, pool_size: int) -> int:
        i = self.count % max(pool_size, 1)
        self.count += 1
        return i


def first_call(candidate: Candidate, clock=time.perf_counter, turns: _Turns | None = None) -> Measurement:
    """Run a candidate once, timed; record JIT compilation when it is Numba code."""
    m = Measurement(candidate.key)
    i = (turns or _Turns()).next(candidate.pool_size)
    recorder = _numba_recorder() if candidate.is_numba else None
    try:
        if recorder is not None:
            with recorder as rec:
                t0 = clock()
                m.first_result = candidate.fn(i)
                t1 = clock()
            m.jit = _jit_summary(rec)
        else:
            t0 = clock()
            m.first_result = candidate.fn(i)
            t1 = clock()
        m.first_call_s = t1 - t0
    except Exception as exc:  # a candidate that fails is reported, not fatal
        m.error = f"{type(exc).__name__}: {exc}"
    return m


def measure(candidates: list[Candidate], budget: Budget, clock=time.perf_counter,
            measurements: dict | None = None, turns: _Turns | None = None) -> dict[str, Measurement]:
    """Warm up and time ``candidates`` interleaved; returns {key: Measurement}.

    ``measurements`` may hold the first-call results already taken (same keys); a
    candidate whose first call failed is not timed.
    """
    turns = turns or _Turns()
    out = measurements if measurements is not None else {}
    for c in candidates:
        out.setdefault(c.key, Measurement(c.key))
    live = [c for c in candidates if out[c.key].error is None]
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        _warm_up(live, budget, clock, out, turns)
        live = [c for c in live if out[c.key].error is None]
        if not live:
            return out
        reps = {c.key: reps_for(out[c.key].warmup_s / max(out[c.key].warmup_calls, 1), budget) for c in live}
        rounds = max(1, min(budget.rounds, min(reps.values())))
        block = {k: math.ceil(n / rounds) for k, n in reps.items()}
        for r in range(rounds):
            shift = r % len(live)
            for c in live[shift:] + live[:shift]:
                m = out[c.key]
                if m.error is not None:
                    continue
                try:
                    for _ in range(block[c.key]):
                        i = turns.next(c.pool_size)
                        t0 = clock()
                        c.fn(i)
                        t1 = clock()
                        m.samples_s.append(t1 - t0)
                except Exception as exc:
                    m.error = f"{type(exc).__name__}: {exc}"
    finally:
        if gc_was_enabled:
            gc.enable()
    return out


def _warm_up(live, budget, clock, out, turns):
    pending = list(live)
    while pending:
        still = []
        for c in pending:
            m = out[c.key]
            try:
                i = turns.next(c.pool_size)
                t0 = clock()
                c.fn(i)
                t1 = clock()
            except Exception as exc:
                m.error = f"{type(exc).__name__}: {exc}"
                continue
            m.warmup_calls += 1
            m.warmup_s += t1 - t0
            if m.warmup_s < budget.warmup_s:
                still.append(c)
        pending = still


# ---- Numba compilation ----------------------------------------------------------------


def _numba_recorder():
    """A context manager that watches Numba compile during a first call, or None.

    Numba's ``numba:compile`` event fires only when a specialisation is compiled, not
    when it is loaded from the on-disk cache, so this wraps ``Dispatcher.compile``
    (which does both) for the duration of the call and restores it afterwards. A
    dispatcher whose ``stats.cache_hits`` grew loaded its new specialisation from the
    cache; one that grew without a hit compiled it.
    """
    try:
        from numba.core.dispatcher import Dispatcher
    except ImportError:
        return None
    return _CompileWatch(Dispatcher)


class _CompileWatch:
    def __init__(self, dispatcher_class):
        self.cls = dispatcher_class
        self.compile_s = 0.0
        self.compiled = 0
        self.cache_loaded = 0
        self.kernels = []
        self._depth = 0

    def __enter__(self):
        original = self.cls.compile
        watch = self

        def compile(disp, sig):
            hits, known = _cache_hits(disp), len(disp.overloads)
            watch._depth += 1
            t0 = time.perf_counter()
            try:
                return original(disp, sig)
            finally:
                watch._depth -= 1
                if watch._depth == 0:
                    watch.compile_s += time.perf_counter() - t0
                if len(disp.overloads) > known:
                    if _cache_hits(disp) > hits:
                        watch.cache_loaded += 1
                    else:
                        watch.compiled += 1
                    name = getattr(getattr(disp, "py_func", None), "__qualname__", None)
                    if name and name not in watch.kernels:
                        watch.kernels.append(name)

        self._original = original
        self.cls.compile = compile
        return self

    def __exit__(self, *exc):
        self.cls.compile = self._original
        return False

    def summary(self) -> dict:
        return {"compile_s": self.compile_s, "compiled": self.compiled, "cache_loaded": self.cache_loaded,
                "kernels": self.kernels}


def _cache_hits(dispatcher) -> int:
    try:
        return int(sum(dispatcher.stats.cache_hits.values()))
    except AttributeError:
        return 0


def _jit_summary(watch) -> dict:
    return watch.summary()
