"""The CUDA stream fastconv's GPU work is queued on, chosen by the caller.

``with fastconv.cuda.stream(s): ...`` makes ``s`` the current stream of the calling thread
(a context variable, so threads and asyncio tasks each keep their own, as PyTorch's and
CuPy's current streams are per thread). Every kernel launch, device allocation and copy a
fastconv op makes goes through this module or ``_jit.Kernel`` and is queued on that stream:
nothing goes to the default stream and nothing waits on the host, except where the caller
asks for host data (NumPy input with ``device="cuda"``, ``device="cpu"`` with a CUDA input,
and the few ops that read values on the host, which then wait for ``s`` alone).

Without a stream the behaviour is Numba's default: the legacy default stream, and a
CUDA Array Interface producer's exported stream synchronised before its array is read.

Results are ordered on ``s`` and carry no stream of their own (as CuPy arrays and torch
tensors carry none): work queued later on ``s`` sees them; anything else reads them after
``s.synchronize()`` (or an event) -- ``y.copy_to_host()`` on the default stream included,
since a non-blocking stream (PyTorch's) is not ordered with it.
"""

from __future__ import annotations

import contextvars

from numba import config, cuda

SIMULATOR = bool(config.ENABLE_CUDASIM)
if SIMULATOR:
    NUMBA_STREAM = cuda.stream  # the simulator's stream class (and its default_stream)
else:
    from numba.cuda.cudadrv.driver import Stream as NUMBA_STREAM

# 0 is Numba's "no stream": the legacy default stream, synchronous copies.
_CURRENT: contextvars.ContextVar = contextvars.ContextVar("fastconv_cuda_stream", default=0)


def as_numba_stream(s):
    """``s`` as a Numba stream: a Numba stream itself, a ``torch.cuda.Stream`` (``cuda_stream``)
    or a ``cupy.cuda.Stream`` (``ptr``) wrapped by ``numba.cuda.external_stream``; None or 0 is
    the default stream (0)."""
    if s is None or (isinstance(s, int) and not isinstance(s, bool) and s == 0):
        return 0
    if isinstance(s, NUMBA_STREAM):
        return s
    for attr in ("cuda_stream", "ptr"):  # torch.cuda.Stream, cupy.cuda.Stream
        ptr = getattr(s, attr, None)
        if isinstance(ptr, int) and not isinstance(ptr, bool):
            return cuda.external_stream(ptr) if ptr else 0
    raise TypeError(f"fastconv.cuda.stream: s must be a Numba stream (numba.cuda.stream(), "
                    f"numba.cuda.external_stream(ptr)), a torch.cuda.Stream, a cupy.cuda.Stream, or None for the "
                    f"default stream; got {type(s).__name__}")


def stream(s) -> StreamContext:
    """Queue fastconv's GPU work of this thread on ``s`` inside the block (see the module
    docstring); blocks nest, and ``stream(None)`` returns to the default stream."""
    return StreamContext(as_numba_stream(s))


class StreamContext:
    """What ``stream(s)`` returns: a context manager that makes Numba stream (or 0) ``s``
    current, and ``as`` gives it. A class rather than a generator: it is entered on every
    call of the PyTorch bridge, and costs a few hundred nanoseconds less this way."""

    __slots__ = ("stream", "_tokens")

    def __init__(self, s):
        self.stream = s
        self._tokens = []

    def __enter__(self):
        self._tokens.append(_CURRENT.set(self.stream))
        return self.stream

    def __exit__(self, *exc):
        _CURRENT.reset(self._tokens.pop())
        return False


def current_stream():
    """The Numba stream fastconv queues work on now, or 0 for the default stream."""
    return _CURRENT.get()


def device_array(shape, dtype):
    """An uninitialised device array, allocated for the current stream."""
    return cuda.device_array(shape, dtype, stream=current_stream())


def to_device(host):
    """A device copy of NumPy array ``host``, queued on the current stream (a pageable host
    array is staged before this returns, so ``host`` may be freed at once)."""
    return cuda.to_device(host, stream=current_stream())


def copy(arr):
    """A C-contiguous device copy of device array ``arr``, queued on the current stream.

    The copy runs Numba's assignment kernel; with no stream chosen it is queued on the
    default stream without waiting (Numba's ``out[...] = arr`` would synchronise)."""
    out = device_array(arr.shape, arr.dtype)
    out.bind(current_stream() or cuda.default_stream())[...] = arr
    return out


def as_device(x):
    """A Numba device array over CUDA object ``x``'s memory (no copy).

    With a stream chosen, an array whose producer exported another stream through the CUDA
    Array Interface (v3) is ordered after it by an event the current stream waits for, on
    the device; without one, Numba's rule applies (the exported stream is synchronised)."""
    if hasattr(x, "copy_to_host"):
        return x
    s = current_stream()
    if not s:
        return cuda.as_cuda_array(x)
    desc = x.__cuda_array_interface__
    arr = cuda.from_cuda_array_interface(desc, owner=x, sync=False)
    producer = desc.get("stream")
    if producer is not None and producer != int(s):
        after(cuda.external_stream(producer), s)
    return arr


def after(producer, consumer):
    """Make ``consumer`` wait on the device for the work queued so far on ``producer``."""
    event = cuda.event(timing=False)
    event.record(producer)
    event.wait(consumer)


def to_host(x):
    """A NumPy copy of device array ``x``.

    Copied on the current stream (else on the stream ``x`` is bound to, else the default
    stream, synchronously) and waited for: the caller asked for host data."""
    arr = as_device(x)
    s = current_stream() or getattr(arr, "stream", 0)
    host = arr.copy_to_host(stream=s)
    if s:
        s.synchronize()
    return host


def unbound(result):
    """Device results as arrays bound to no stream (tuples element-wise): a later
    ``copy_to_host()`` or slice by the user is then not silently asynchronous on the stream
    the call ran on."""
    if isinstance(result, tuple):
        return tuple(unbound(r) for r in result)
    if getattr(result, "stream", 0) and hasattr(result, "bind"):
        return result.bind(0)
    return result
