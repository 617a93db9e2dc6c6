"""Which backend an array belongs to, dtype rules, and device round trips."""

from __future__ import annotations

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
# max pooling (window, adaptive, global, pyramid) and max_unpool also take these, exactly
INT_DTYPES = tuple(np.dtype(t) for t in ("int8", "uint8", "int16", "int32", "int64"))
MAX_ONLY = ("integer input is accepted by max_pool*, adaptive_max_pool*, global_max_pool, "
            "spatial_pyramid_pool(mode='max') and max_unpool* only")


def is_cuda_array(x) -> bool:
    # Numba's CUDA simulator arrays (NUMBA_ENABLE_CUDASIM=1) carry __cuda_ndarray__, not the interface.
    return hasattr(x, "__cuda_array_interface__") or getattr(type(x), "__cuda_ndarray__", False) is True


def backend_of(op: str, x, device) -> str:
    """The backend that runs this call: "cpu" for NumPy, "cuda" for CUDA arrays."""
    if device not in (None, "cpu", "cuda"):
        raise ValueError(f"{op}: device={device!r} is not supported; expected 'cpu', 'cuda' or None")
    if device is not None:
        if not isinstance(x, np.ndarray) and not is_cuda_array(x):
            raise TypeError(f"{op}: input must be a numpy.ndarray or a CUDA array, got {type(x).__name__}")
        return device
    if isinstance(x, np.ndarray):
        return "cpu"
    if is_cuda_array(x):
        return "cuda"
    raise TypeError(
        f"{op}: input must be a numpy.ndarray or an object with __cuda_array_interface__, "
        f"got {type(x).__name__}"
    )


def dtype_of(x) -> np.dtype:
    if isinstance(x, np.ndarray):
        return x.dtype
    if is_cuda_array(x):
        return np.dtype(x.__cuda_array_interface__["typestr"]) if hasattr(x, "__cuda_array_interface__") else x.dtype
    return np.asarray(x).dtype


def shape_of(x) -> tuple:
    if isinstance(x, np.ndarray):
        return x.shape
    if is_cuda_array(x):
        return tuple(x.__cuda_array_interface__["shape"]) if hasattr(x, "__cuda_array_interface__") else tuple(x.shape)
    return np.shape(x)


def check_float(op: str, name: str, x) -> np.dtype:
    dt = dtype_of(x)
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{op}: {name} has dtype {dt}; expected float16, float32 or float64")
    return dt


def check_pool_dtype(op: str, name: str, x, integers: bool) -> np.dtype:
    """The dtype of a pooling op's ``name`` array: float16/32/64, and with ``integers`` (max
    pooling) also int8, uint8, int16, int32, int64; else TypeError saying what is accepted."""
    dt = dtype_of(x)
    if dt in FLOAT_DTYPES or integers and dt in INT_DTYPES:
        return dt
    if integers:
        raise TypeError(f"{op}: {name} has dtype {dt}; expected float16, float32, float64, int8, uint8, int16, "
                        f"int32 or int64")
    if dt in INT_DTYPES:
        raise TypeError(f"{op}: {name} has dtype {dt}; expected float16, float32 or float64 ({MAX_ONLY})")
    raise TypeError(f"{op}: {name} has dtype {dt}; expected float16, float32 or float64")


def check_same_dtype(op: str, **arrays) -> np.dtype:
    """All given (non-None) arrays are float and share one dtype; return it."""
    named = {k: v for k, v in arrays.items() if v is not None}
    dtypes = {k: check_float(op, k, v) for k, v in named.items()}
    first_name, first = next(iter(dtypes.items()))
    for name, dt in dtypes.items():
        if dt != first:
            raise TypeError(f"{op}: {name} has dtype {dt} but {first_name} has dtype {first}; they must match")
    return first


def check_array(op: str, name: str, x, backend: str):
    if x is None:
        return
    if backend == "cpu" and not isinstance(x, np.ndarray):
        if is_cuda_array(x):
            raise TypeError(f"{op}: {name} is a CUDA array but input is a numpy.ndarray; put both on one device")
        raise TypeError(f"{op}: {name} must be a numpy.ndarray, got {type(x).__name__}")
    if backend == "cuda" and not (isinstance(x, np.ndarray) or is_cuda_array(x)):
        raise TypeError(f"{op}: {name} must be a CUDA array or numpy.ndarray, got {type(x).__name__}")


def working_dtype(dtype: np.dtype) -> np.dtype:
    """Kernels compute in float32 for float16/float32 and float64 for float64; integer dtypes
    (max pooling, max_unpool) in themselves, exactly."""
    if dtype.kind in "iu":
        return dtype
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def to_host(x):
    """A NumPy array from a NumPy or CUDA array (a CUDA array is copied on fastconv's current
    stream, :mod:`fastconv.cuda.streams`, and waited for)."""
    if isinstance(x, np.ndarray) or x is None:
        return x
    from .cuda import streams

    return streams.to_host(x)


def like_input(result, x):
    """Return a NumPy result as the same kind of array as ``x`` (NumPy, Numba device, CuPy)."""
    if isinstance(x, np.ndarray) or not is_cuda_array(x):
        return result
    from .cuda import streams

    dev = streams.unbound(streams.to_device(result))
    if type(x).__module__.startswith("cupy"):
        import cupy

        return cupy.asarray(dev)
    return dev
