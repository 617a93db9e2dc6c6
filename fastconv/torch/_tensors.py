"""Tensors to fastconv's arrays and back, without copies.

A CPU tensor is handed over as ``tensor.numpy(force=True)`` (a view of the same memory,
strides included, so a non-contiguous or channels_last tensor arrives as the strided array
it is; ``force`` detaches a tensor that requires grad at about half the cost of ``detach()``,
and copies only a view with a negative bit set, which ``numpy()`` refuses)
and a NumPy result comes back through ``torch.from_numpy`` (the same memory again). The
eager path hands a channels_last-format tensor over ``permuted``: its array with the
channels axis moved last, and the result's axes moved back, on NumPy's side (about 0.1 us
each, where ``Tensor.movedim`` costs about 1 us). A
CUDA tensor is handed over through ``__cuda_array_interface__`` (``numba.cuda.as_cuda_array``)
and its result comes back the same way (``torch.as_tensor``).

A CUDA call runs on PyTorch's current stream: :func:`run` queues every launch, allocation
and copy of the call there (``fastconv.cuda.stream`` with the stream's
``numba.cuda.external_stream``, :func:`numba_stream`), so it is ordered after the work
queued before it and before the work queued after it, as a PyTorch op is, with no wait on
the host and none for the user to add. The project's torch is the CPU build, which has no
CUDA tensors: tests/test_cuda_stream.py runs this path under the simulator with a stand-in
for ``torch.cuda.current_stream``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..ops._memory_format import TO_CHANNELS_FIRST, TO_CHANNELS_LAST

NUMPY_DTYPES = {
    torch.float16: np.dtype(np.float16), torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64),
    torch.int8: np.dtype(np.int8), torch.uint8: np.dtype(np.uint8), torch.int16: np.dtype(np.int16),
    torch.int32: np.dtype(np.int32), torch.int64: np.dtype(np.int64),
}
CHANNELS_LAST_FORMATS = {4: torch.channels_last, 5: torch.channels_last_3d}



def as_array(tensor, permuted=False):
    """The tensor's memory as a NumPy array (CPU) or a Numba device array (CUDA); None stays
    None. ``permuted``: a 4-D or 5-D tensor's array with its axes in channels-last order."""
    if tensor is None:
        return None
    if tensor.is_cuda:
        from numba import cuda

        tensor = tensor.detach()
        return cuda.as_cuda_array(tensor.permute(TO_CHANNELS_LAST[tensor.dim()]) if permuted else tensor)
    if tensor.dtype not in NUMPY_DTYPES:
        numpy_dtype(tensor)  # raises, naming the dtype
    array = tensor.numpy(force=True)
    return array.transpose(TO_CHANNELS_LAST[array.ndim]) if permuted else array


def as_tensor(result, inputs, permuted=False):
    """A fastconv result (NumPy or device array) as a tensor over the same memory;
    ``permuted``: a channels-last result with its axes moved back to (N, C, *spatial).

    A result that is a view of an input (some ops return one for a no-op geometry) is
    copied once: a registered op's outputs must not alias its inputs."""
    if isinstance(result, np.ndarray):
        if result.base is not None and any(isinstance(a, np.ndarray) and np.may_share_memory(result, a)
                                           for a in inputs):
            result = result.copy()
        return torch.from_numpy(result.transpose(TO_CHANNELS_FIRST[result.ndim]) if permuted else result)
    tensor = torch.as_tensor(result, device="cuda")
    return tensor.permute(TO_CHANNELS_FIRST[tensor.dim()]) if permuted else tensor


def like_parameter(grad, parameter):
    """``grad`` (a contiguous CPU tensor of ``parameter``'s shape) in ``parameter``'s memory
    format when that is channels_last: autograd's AccumulateGrad keeps a gradient whose strides
    match its parameter's and copies any other into them, on PyTorch's intra-op pool, which
    ``fastconv.torch`` holds to one thread. The copy here runs on fastconv's threads."""
    nd = parameter.dim()
    if (grad is None or grad.is_cuda or nd not in TO_CHANNELS_LAST or grad.dtype not in (torch.float32, torch.float64)
            or parameter.is_contiguous() or not grad.is_contiguous()
            or not parameter.is_contiguous(memory_format=CHANNELS_LAST_FORMATS[nd])):
        return grad
    from ..cpu.layout import channels_last_5d, contiguous_channels_last

    array = grad.numpy()
    moved = contiguous_channels_last(channels_last_5d(array, nd - 2, False), array.dtype)
    return torch.from_numpy(moved.reshape(array.transpose(TO_CHANNELS_LAST[nd]).shape)).permute(TO_CHANNELS_FIRST[nd])


def channels_last_shape(shape):
    """(N, *spatial, C) of an (N, C, *spatial) shape."""
    return (shape[0], *shape[2:], shape[1])


def run(tensor, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, queued on PyTorch's current stream when ``tensor`` is on a GPU."""
    if not tensor.is_cuda:
        return fn(*args, **kwargs)
    from ..cuda.streams import StreamContext

    with StreamContext(numba_stream(tensor.device)):
        return fn(*args, **kwargs)


_NUMBA_STREAMS: dict = {}  # (device index, stream pointer) -> numba.cuda.external_stream


def numba_stream(device):
    """PyTorch's current stream on ``device`` as a Numba stream.

    The wrapper (``numba.cuda.external_stream``: a handle, owning nothing) is kept per device
    and stream pointer, so a call costs a dict lookup; a stream PyTorch destroys and a later
    one at the same address are the same handle to CUDA. PyTorch's default stream (pointer 0)
    is wrapped too, so copies on it are queued rather than synchronous."""
    ptr = torch.cuda.current_stream(device).cuda_stream
    key = (device.index, ptr)
    found = _NUMBA_STREAMS.get(key)
    if found is None:
        from numba import cuda

        if len(_NUMBA_STREAMS) >= 256:  # streams come from PyTorch's pools: only user-made ones add up
            _NUMBA_STREAMS.clear()
        found = _NUMBA_STREAMS[key] = cuda.external_stream(ptr)
    return found


def fake_array(tensor):
    """A zero-batch NumPy array shaped and typed as ``tensor`` but for its first dim: running
    fastconv's op on it resolves the spec (checks and output shape) and computes nothing."""
    return np.empty((0, *tensor.shape[1:]), numpy_dtype(tensor))


def numpy_dtype(tensor):
    """The NumPy dtype of a tensor fastconv can take; TypeError naming it otherwise."""
    try:
        return NUMPY_DTYPES[tensor.dtype]
    except KeyError:
        raise TypeError(f"fastconv.torch: tensors of dtype {tensor.dtype} are not supported; expected float16, "
                        "float32, float64 (or an integer dtype for max pooling)") from None
