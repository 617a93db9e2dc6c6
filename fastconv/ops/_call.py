"""What every op front end does around its kernel: pick the backend, add and remove
the batch axis of unbatched input, handle empty batches, move arrays between host
and device, and dispatch on the resolved spec."""

from __future__ import annotations

import numpy as np

from .._arrays import backend_of, check_array, is_cuda_array, like_input, shape_of, to_host
from ..dispatch import choose


def batched(op: str, x, nd: int, device, names_and_arrays=()):
    """(backend, batched input, was_unbatched) for an input of nd + 1 or nd + 2 dims."""
    backend = backend_of(op, x, device)
    for name, arr in names_and_arrays:
        check_array(op, name, arr, backend)
    shape = shape_of(x)
    if len(shape) == nd + 1:
        return backend, _reshape(x, (1, *shape)), True
    if len(shape) != nd + 2:
        raise ValueError(
            f"{op}: input must have {nd + 2} dims (batched) or {nd + 1} (unbatched), got shape {tuple(shape)}"
        )
    return backend, x, False


def _reshape(x, shape):
    if isinstance(x, np.ndarray):
        return x.reshape(shape)
    if hasattr(x, "reshape") and not hasattr(x, "copy_to_host"):
        return x.reshape(shape)  # CuPy
    from numba import cuda

    arr = x if hasattr(x, "copy_to_host") else cuda.as_cuda_array(x)
    if not arr.is_c_contiguous():
        arr = _device_copy(arr)
    return arr.reshape(*shape)


def _device_copy(arr):
    from numba import cuda

    out = cuda.device_array(arr.shape, arr.dtype)
    out[...] = arr
    return out


def _unbatch(result):
    if isinstance(result, tuple):
        return tuple(_unbatch(r) for r in result)
    return _reshape(result, tuple(shape_of(result))[1:])


def execute(family: str, backend: str, spec, algo, x_user, arrays, unbatched: bool, empty_result):
    """Run ``spec`` on ``backend``; return a result of the same kind as ``x_user``.

    ``arrays`` are the kernel's array arguments (input first, None allowed);
    ``empty_result()`` builds the NumPy result of an empty batch.
    """
    impl = choose_cached(family, backend, spec, algo)
    if spec.batch == 0:
        result = empty_result()
    elif backend == "cpu":
        result = impl.fn(spec, *(to_host(a) for a in arrays))
    else:
        result = _run_cuda(impl, spec, arrays)
    result = _as_kind(result, x_user)
    return _unbatch(result) if unbatched else result


_CHOSEN: dict = {}


def choose_cached(family, backend, spec, algo):
    """``choose``, remembered for the spec object: front ends that cache resolved specs
    (pooling) pass the same object again, and then skip the table walk. The entry holds
    the spec, so its id is not reused while the entry lives."""
    hit = _CHOSEN.get(id(spec))
    if hit is not None and hit[0] is spec and hit[1] == (family, backend, algo):
        return hit[2]
    impl = choose(family, backend, spec, algo)
    if len(_CHOSEN) >= 1024:
        _CHOSEN.clear()
    _CHOSEN[id(spec)] = (spec, (family, backend, algo), impl)
    return impl


def _run_cuda(impl, spec, arrays):
    from numba import cuda

    dev = [None if a is None else (cuda.to_device(np.ascontiguousarray(a)) if isinstance(a, np.ndarray)
                                    else a if hasattr(a, "copy_to_host") else cuda.as_cuda_array(a))
           for a in arrays]
    return impl.fn(spec, *dev)


def _as_kind(result, x_user):
    if isinstance(result, tuple):
        return tuple(_as_kind(r, x_user) for r in result)
    if isinstance(x_user, np.ndarray):
        return to_host(result)
    if is_cuda_array(x_user) and isinstance(result, np.ndarray):
        return like_input(result, x_user)
    if is_cuda_array(x_user) and type(x_user).__module__.startswith("cupy"):
        import cupy

        return cupy.asarray(result)
    return result
