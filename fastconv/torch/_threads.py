"""One process, two thread pools: PyTorch's OpenMP team and fastconv's TBB workers.

A converted model alternates between PyTorch's ops (batch norm, ReLU, the loss, the
optimizer) and fastconv's kernels. PyTorch's OpenMP workers spin after every parallel op
(libgomp's default wait spins a while before it sleeps), so when fastconv's kernel
starts, its TBB worker finds a core already taken, and on two cores three busy threads
share them: the kernel's chunks wait for a preempted thread, for whole scheduler ticks
when other processes want the cores too. PyTorch's own ops in the same step wait the
same way for their worker. The measurements are in the README ("Threads").

What fixes it, measured against the other options (README): PyTorch's intra-op pool held
to one thread while ``fastconv.torch`` is loaded, so one runtime, fastconv's, owns the
cores in parallel, and PyTorch's ops run on the calling thread between fastconv's kernels,
so no PyTorch worker spins on a core that fastconv's kernels need. The user's own choice
is kept: with ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` set nothing changes, and
``torch.set_num_threads`` called after the import overrides this.
"""

from __future__ import annotations

import os

import torch

# Variables by which a user sets PyTorch's thread count before it starts; if any is set, it is theirs.
THREAD_COUNT_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def share_cores() -> str:
    """Hold PyTorch's intra-op pool to one thread unless the user chose its size; say what was done."""
    chosen = [name for name in THREAD_COUNT_VARIABLES if os.environ.get(name)]
    if chosen:
        return f"PyTorch's {torch.get_num_threads()} intra-op threads kept ({', '.join(chosen)} set by the user)"
    before = torch.get_num_threads()
    if before > 1:
        torch.set_num_threads(1)
    return f"PyTorch's intra-op threads {before} -> 1: fastconv's runtime owns the cores"


# What importing fastconv.torch did to PyTorch's threads (as fastconv.cpu._jit.THREADS says fastconv's).
THREADS = share_cores()
