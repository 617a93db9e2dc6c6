"""Sizes the CUDA kernels' launch planning shares: the static shared-memory budget of a
block, the register tile of the direct and transposed kernels, and the device's
multiprocessor count, which decides how many blocks fill it."""

from __future__ import annotations

from numba import cuda
from numba.cuda.cudadrv.error import CudaSupportError

SHARED_BUDGET = 40 * 1024  # bytes of static shared memory per block (48 KB is the static limit)
RP = 4  # output pixels per thread (along W): conv_direct, conv_transpose
RK = 4  # output channels per thread: conv_direct, conv_transpose

# Planning without a device (the simulator's fake device, tools/gpu_static.py on a machine
# without a driver) assumes an H100's 132 multiprocessors.
DEFAULT_SM_COUNT = 132


def sm_count() -> int:
    """Multiprocessors of the current device; DEFAULT_SM_COUNT when none is known."""
    try:
        return int(cuda.get_current_device().MULTIPROCESSOR_COUNT)
    except (CudaSupportError, AttributeError):  # no driver; the simulator's device has no count
        return DEFAULT_SM_COUNT
