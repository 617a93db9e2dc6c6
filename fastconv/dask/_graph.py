"""The task graph of fastconv.dask: one task per output chunk, fed by explicit slices of
the input chunks it reads (see halo.py), and the per-task Numba thread count."""

from __future__ import annotations

import itertools
import operator
from contextlib import contextmanager

import numpy as np
from dask.array import Array
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from .._args import is_int

_THREADS = [1]  # threads per Dask task; None: Numba's whole pool


def _check_threads(where: str, threads):
    if threads is None:
        return None
    if not is_int(threads):
        raise TypeError(f"{where}: threads must be a positive int or None, got {type(threads).__name__}")
    import numba

    limit = numba.config.NUMBA_NUM_THREADS
    if not 1 <= threads <= limit:
        raise ValueError(f"{where}: threads={threads} must be between 1 and NUMBA_NUM_THREADS={limit}")
    return int(threads)


def set_threads(threads):
    """Set the Numba threads each fastconv.dask task uses (default 1); return the old value.

    ``None`` lets every task use Numba's whole pool (``NUMBA_NUM_THREADS``). The value is
    read when an op builds its graph, so it applies to arrays built afterwards; an op's
    own ``threads=`` keyword overrides it."""
    threads = _check_threads("fastconv.dask.set_threads", threads)
    old, _THREADS[0] = _THREADS[0], threads
    return old


def get_threads():
    """The Numba threads per task that new fastconv.dask arrays will use (None: all)."""
    return _THREADS[0]


def resolve_threads(op: str, threads="default"):
    if isinstance(threads, str) and threads == "default":
        return _THREADS[0]
    return _check_threads(op, threads)


@contextmanager
def numba_threads(threads):
    """Run with ``threads`` Numba threads in this thread (numba.set_num_threads is
    thread-local), then restore the previous count."""
    import numba

    if threads is None:
        threads = numba.config.NUMBA_NUM_THREADS
    old = numba.get_num_threads()
    if old == threads:
        yield
        return
    numba.set_num_threads(threads)
    try:
        yield
    finally:
        numba.set_num_threads(old)


def _assemble(parts, blocks):
    """The region that ``blocks`` read, from the nested list (depth ndim) of their pieces:
    a single piece as it is (no copy), several copied once into one new array."""
    lengths = [[p[2] - p[1] for p in b.pieces] for b in blocks]
    if all(len(n) == 1 for n in lengths):
        inner = parts
        for _ in blocks:
            inner = inner[0]
        return inner
    offsets = [np.concatenate([[0], np.cumsum(n)]) for n in lengths]
    first = parts
    for _ in blocks:
        first = first[0]
    region = np.empty(tuple(int(o[-1]) for o in offsets), first.dtype)
    for pidx in itertools.product(*(range(len(n)) for n in lengths)):
        piece = parts
        for i in pidx:
            piece = piece[i]
        region[tuple(slice(o[i], o[i + 1]) for o, i in zip(offsets, pidx))] = piece
    return region


def _nest(flat, shape):
    """A flat list as nested lists of ``shape``."""
    if len(shape) == 1:
        return list(flat)
    step = len(flat) // shape[0]
    return [_nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def _copy_slice(chunk, slices):
    return np.array(chunk[slices], copy=True)


def _run_block(parts, blocks, run, threads):
    if parts is not None and hasattr(run, "takes_parts") and run.takes_parts(blocks):
        with numba_threads(threads):
            return run.from_parts(parts, blocks)
    if parts is None:
        region = None
    else:
        region = _assemble(parts, blocks)
        for axis, b in enumerate(blocks):
            if b.index is not None:
                region = np.take(region, b.index, axis=axis)
    with numba_threads(threads):
        return run(region, blocks)


def blocked(op: str, x: Array, plans, run, dtype, threads, token, *, outputs=None):
    """A dask array (or, with ``outputs``, a tuple of them) whose chunk at block index
    ``idx`` is ``run(region, blocks)``: ``blocks[a] = plans[a][idx[a]]`` and ``region`` the
    input region those blocks describe (None when an axis reads no input: a chunk wholly
    in padding). ``outputs`` lists the dtypes of a run that returns a tuple."""
    name = f"fastconv-{op}-{tokenize(x, token)}"
    piece_name = name + "-halo"
    run_name = name + "-fn"
    dsk = {run_name: run}
    chunks = tuple(tuple(b.size for b in plan) for plan in plans)
    for idx in itertools.product(*(range(len(p)) for p in plans)):
        blocks = tuple(p[i] for p, i in zip(plans, idx))
        if any(not b.pieces for b in blocks):
            parts = None
        else:
            keys = []
            for pidx in itertools.product(*(range(len(b.pieces)) for b in blocks)):
                chunk = tuple(b.pieces[i][0] for b, i in zip(blocks, pidx))
                slices = tuple(slice(b.pieces[i][1], b.pieces[i][2]) for b, i in zip(blocks, pidx))
                whole = all(s.start == 0 and s.stop == x.chunks[a][c]
                            for a, (s, c) in enumerate(zip(slices, chunk)))
                if whole:
                    keys.append((x.name, *chunk))
                else:
                    key = (piece_name, *idx, *pidx)
                    part = np.prod([s.stop - s.start for s in slices])
                    whole_size = np.prod([x.chunks[a][c] for a, c in enumerate(chunk)])
                    # a halo strip is copied, so that the neighbour chunk it comes from can be
                    # released as soon as its own tasks have run; larger parts stay views
                    take = _copy_slice if 2 * part <= whole_size else operator.getitem
                    dsk[key] = (take, (x.name, *chunk), slices)
                    keys.append(key)
            parts = _nest(keys, tuple(len(b.pieces) for b in blocks))
        dsk[(name, *idx)] = (_run_block, parts, blocks, run_name, threads)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[x])
    if outputs is None:
        return Array(graph, name, chunks, dtype=dtype, meta=np.empty((0,) * len(chunks), dtype))
    arrays = []
    for i, dt in enumerate(outputs):
        part = f"{name}-{i}"
        pdsk = {(part, *idx): (operator.getitem, (name, *idx), i)
                for idx in itertools.product(*(range(len(p)) for p in plans))}
        g = HighLevelGraph.from_collections(part, pdsk, dependencies=[Array(graph, name, chunks, dtype=dt)])
        arrays.append(Array(g, part, chunks, dtype=dt, meta=np.empty((0,) * len(chunks), dt)))
    return tuple(arrays)
