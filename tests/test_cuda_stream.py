"""fastconv's GPU ops on a stream the caller chooses (``fastconv.cuda.stream``), and the
PyTorch bridge's use of PyTorch's current stream.

Runs on a real GPU and under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``). What the
simulator (numba-cuda 0.30) allows: ``numba.cuda.stream()`` objects, launches configured
with a stream, ``device_array``/``to_device``/``copy_to_host`` with ``stream=``, and
``synchronize``, all accepted and run synchronously; not ``numba.cuda.external_stream``
(it raises) nor arrays imported through ``__cuda_array_interface__``. So these tests check:

- per op family (conv, transposed, depthwise, pooling, adaptive, pyramid, and the gradients
  of convolution, depthwise convolution, bias, pooling and the pyramid),
  that a call inside ``fastconv.cuda.stream(s)`` gives the NumPy reference's result, and
  bitwise the default stream's;
- by recording at Numba's layer (the kernel dispatchers' launch configuration, the
  allocation and copy functions, every ``synchronize``), that each launch, allocation and
  copy of the call was given ``s``, and that only ``s`` was waited for, and only by the
  calls that read values on the host;
- the bridge's stream selection, with stand-ins for ``torch.cuda.current_stream`` and
  ``numba.cuda.external_stream``.

What a real GPU adds, and these tests cannot see here: that the work really is ordered on
the stream (no race with a non-blocking stream's other work), the event a stream waits on
for a CUDA Array Interface producer's exported stream, and PyTorch CUDA tensors.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest
from numba import cuda

import fastconv as F
import fastconv.cuda as FC
import fastconv.grad as G
from fastconv import reference as ref
from fastconv.cuda import streams
from fastconv.cuda.concat import place_level

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not cuda.is_available(), reason="no CUDA GPU and NUMBA_ENABLE_CUDASIM is not set"),
]

RTOL, ATOL = 1e-10, 1e-12  # float64 throughout


class Record:
    """What reached Numba during a call: (kernel, stream) per launch, (function, stream) per
    allocation or copy, and the streams (or "device") synchronised."""

    def __init__(self):
        self.clear()

    def clear(self):
        self.launches, self.memory, self.syncs = [], [], []


@pytest.fixture
def record(monkeypatch):
    rec = Record()
    dispatcher = type(place_level)  # the class of every numba.cuda kernel (the simulator's, or a GPU's)
    launch = dispatcher.__getitem__

    def configured(self, config):
        name = getattr(self, "__name__", None) or self.py_func.__name__
        rec.launches.append((name, config[2] if len(config) > 2 else 0))
        return launch(self, config)

    monkeypatch.setattr(dispatcher, "__getitem__", configured)
    for name in ("device_array", "to_device"):
        def traced(*args, _fn=getattr(cuda, name), _name=name, **kwargs):
            rec.memory.append((_name, kwargs.get("stream", 0)))
            return _fn(*args, **kwargs)

        monkeypatch.setattr(cuda, name, traced)
    array_type = type(cuda.device_array(1))
    to_host = array_type.copy_to_host

    def copy_to_host(self, ary=None, stream=0):
        rec.memory.append(("copy_to_host", stream))
        return to_host(self, ary, stream)

    monkeypatch.setattr(array_type, "copy_to_host", copy_to_host)
    stream_type = type(cuda.stream())
    wait = stream_type.synchronize

    def synchronize(self):
        rec.syncs.append(self)
        return wait(self)

    monkeypatch.setattr(stream_type, "synchronize", synchronize)
    device_wait = cuda.synchronize
    monkeypatch.setattr(cuda, "synchronize", lambda: (rec.syncs.append("device"), device_wait())[1])
    return rec


def _host(result):
    if isinstance(result, tuple):
        return tuple(_host(r) for r in result)
    return result if isinstance(result, np.ndarray) else result.copy_to_host()


def _rng():
    return np.random.default_rng(13)


# Each case: name, host arrays, the call on device arrays, the reference (host arrays ->
# expected NumPy result(s)), and whether the call reads values on the host (and so may
# wait for the stream).
def _conv_reflect_noncontiguous():
    x, w = _rng().standard_normal((1, 3, 5, 7)), _rng().standard_normal((2, 3, 3, 3))

    def call(d):  # a strided view: the copy to a contiguous array runs on the stream too
        return F.conv2d(d["x"][:, :, :, 1:], d["w"], padding=1, padding_mode="reflect", algo="direct")

    return {"x": x, "w": w}, call, lambda h: ref.conv(h["x"][:, :, :, 1:], h["w"], padding=1,
                                                      padding_mode="reflect"), False


def _conv_im2col_bias_relu():
    x, w, b = _rng().standard_normal((2, 2, 4, 4)), _rng().standard_normal((3, 2, 2, 2)), _rng().standard_normal(3)
    return ({"x": x, "w": w, "b": b},
            lambda d: F.conv2d(d["x"], d["w"], d["b"], stride=2, padding=1, algo="im2col", activation="relu"),
            lambda h: ref.conv(h["x"], h["w"], h["b"], stride=2, padding=1, activation="relu"), False)


def _depthwise_channels_last():
    x, w = _rng().standard_normal((1, 4, 5, 2)), _rng().standard_normal((4, 1, 3, 3))
    return ({"x": x, "w": w},
            lambda d: F.depthwise_conv2d(d["x"], d["w"], padding=1, channels_last=True),
            lambda h: np.moveaxis(ref.depthwise_conv(np.moveaxis(h["x"], -1, 1), h["w"], padding=1), 1, -1), False)


def _conv_transpose():
    x, w = _rng().standard_normal((1, 2, 3, 3)), _rng().standard_normal((2, 2, 3, 3))
    return ({"x": x, "w": w}, lambda d: F.conv_transpose2d(d["x"], d["w"], stride=2, padding=1, output_padding=1),
            lambda h: ref.conv_transpose(h["x"], h["w"], stride=2, padding=1, output_padding=1), False)


def _max_pool_indices():
    x = _rng().standard_normal((1, 2, 5, 5))
    return ({"x": x}, lambda d: F.max_pool2d(d["x"], 3, 2, 1, return_indices=True),
            lambda h: ref.max_pool(h["x"], 3, 2, 1, return_indices=True), False)


def _avg_pool():
    x = _rng().standard_normal((2, 3, 7))
    return ({"x": x}, lambda d: F.avg_pool1d(d["x"], 3, 2, 1, count_include_pad=False),
            lambda h: ref.avg_pool(h["x"], 3, 2, 1, count_include_pad=False), False)


def _adaptive():
    x = _rng().standard_normal((1, 2, 3, 4, 5))
    return ({"x": x}, lambda d: F.adaptive_max_pool3d(d["x"], (2, 3, 2)),
            lambda h: ref.adaptive_max_pool(h["x"], (2, 3, 2)), False)


def _pyramid():
    x = _rng().standard_normal((2, 3, 5, 6))
    return ({"x": x}, lambda d: F.spatial_pyramid_pool(d["x"], (1, 2), mode="avg"),
            lambda h: ref.spatial_pyramid_pool(h["x"], (1, 2), mode="avg"), False)


def _linear_grad(f, v, g):
    """The reference gradient of <f(v), g> with respect to v, for f linear in v: one reference
    call per element of v (the shapes are tiny)."""
    out = np.zeros(v.size)
    for j in range(v.size):
        basis = np.zeros(v.size)
        basis[j] = 1.0
        out[j] = np.vdot(f(basis.reshape(v.shape)), g)
    return out.reshape(v.shape)


def _routed(x, idx, g):
    """Max pooling's reference input gradient: each output's gradient added at its index."""
    gi = np.zeros(x.shape)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            np.add.at(gi[n, c].reshape(-1), idx[n, c].reshape(-1), np.asarray(g[n, c], np.float64).reshape(-1))
    return gi


def _conv_grads():
    """Input (reflect padding: the adjoint transposed conv, then the fold with its index lists)
    and weight gradients."""
    x, w = _rng().standard_normal((1, 2, 5, 4)), _rng().standard_normal((3, 2, 3, 3))
    g = _rng().standard_normal(ref.conv(x, w, padding=1, padding_mode="reflect").shape)

    def call(d):
        gi = G.conv2d_input(x.shape, d["w"], d["g"], padding=1, padding_mode="reflect")
        gw = G.conv2d_weight(d["x"], w.shape, d["g"], padding=1, padding_mode="reflect")
        return gi, gw

    def expected(h):
        return (_linear_grad(lambda v: ref.conv(v, h["w"], padding=1, padding_mode="reflect"), h["x"], h["g"]),
                _linear_grad(lambda v: ref.conv(h["x"], v, padding=1, padding_mode="reflect"), h["w"], h["g"]))

    return {"x": x, "w": w, "g": g}, call, expected, False


def _gemm_grads():
    """The GEMM gradient kernels: a 1x1 layer's input and weight gradients ("gemm"), channels-last,
    and a 3x3 layer's weight gradient over im2col columns."""
    rng = _rng()
    x1, w1 = rng.standard_normal((2, 3, 3, 4)), rng.standard_normal((4, 4, 1, 1))
    g1 = rng.standard_normal((2, 3, 3, 4))
    x3, g3 = rng.standard_normal((1, 2, 5, 4)), rng.standard_normal((1, 3, 5, 4))

    def call(d):
        return (G.conv2d_input(x1.shape, d["w1"], d["g1"], channels_last=True, algo="gemm"),
                G.conv2d_weight(d["x1"], w1.shape, d["g1"], channels_last=True, algo="gemm"),
                G.conv2d_weight(d["x3"], (3, 2, 3, 3), d["g3"], padding=1, algo="im2col"))

    def expected(h):
        def nchw(a):
            return np.moveaxis(a, -1, 1)

        def nhwc(a):
            return np.moveaxis(a, 1, -1)

        return (nhwc(_linear_grad(lambda v: ref.conv(v, h["w1"]), nchw(h["x1"]), nchw(h["g1"]))),
                _linear_grad(lambda v: ref.conv(nchw(h["x1"]), v), h["w1"], nchw(h["g1"])),
                _linear_grad(lambda v: ref.conv(h["x3"], v, padding=1), np.zeros((3, 2, 3, 3)), h["g3"]))

    return {"x1": x1, "w1": w1, "g1": g1, "x3": x3, "g3": g3}, call, expected, False


def _depthwise_grads():
    """Strided depthwise input and weight gradients (the kernels that serve groups == channels)."""
    x, w = _rng().standard_normal((1, 4, 6, 5)), _rng().standard_normal((4, 1, 3, 3))
    geometry = {"stride": 2, "padding": 1, "groups": 4}
    g = _rng().standard_normal(ref.conv(x, w, **geometry).shape)

    def call(d):
        return (G.conv2d_input(x.shape, d["w"], d["g"], **geometry),
                G.conv2d_weight(d["x"], w.shape, d["g"], **geometry))

    def expected(h):
        return (_linear_grad(lambda v: ref.conv(v, h["w"], **geometry), h["x"], h["g"]),
                _linear_grad(lambda v: ref.conv(h["x"], v, **geometry), h["w"], h["g"]))

    return {"x": x, "w": w, "g": g}, call, expected, False


def _depthwise_stride1_input_grad():
    """Stride 1: the forward depthwise conv with the weight flipped on the device."""
    w = _rng().standard_normal((3, 1, 3, 2))
    g = _rng().standard_normal((2, 3, 4, 5))
    geometry = {"padding": ((1, 1), (0, 1)), "groups": 3}

    def expected(h):
        return _linear_grad(lambda v: ref.conv(v, h["w"], **geometry), np.zeros((2, 3, 4, 5)), h["g"])

    return ({"w": w, "g": g}, lambda d: G.conv2d_input((2, 3, 4, 5), d["w"], d["g"], **geometry), expected, False)


def _pyramid_grads():
    """spatial_pyramid_pool's gradient, one gather over the levels (max: routed through the
    levels' indices, computed on the device)."""
    x = _rng().standard_normal((1, 2, 4, 5))
    g = _rng().standard_normal((1, 2 * (1 + 4)))

    def call(d):
        return tuple(G.spatial_pyramid_pool(d["g"], d["x"], (1, 2), mode) for mode in ("max", "avg"))

    def expected(h):
        return tuple(_linear_grad(lambda v: ref.spatial_pyramid_pool(v, (1, 2), "avg"), h["x"], h["g"])
                     if mode == "avg" else _pyramid_max_grad(h["x"], h["g"]) for mode in ("max", "avg"))

    return {"x": x, "g": g}, call, expected, False


def _pyramid_max_grad(x, g):
    """Max mode routes each cell's gradient to the input its adaptive max picked; levels in
    order, each (C, l, l) block flattened as the forward flattens it."""
    gi = np.zeros(x.shape)
    col = 0
    for lv in (1, 2):
        _, idx = ref.adaptive_max_pool(x, lv, return_indices=True)
        block = g[:, col:col + x.shape[1] * lv * lv].reshape(idx.shape)
        gi += _routed(x, idx, block)
        col += x.shape[1] * lv * lv
    return gi


def _bias_grads():
    """conv_bias summed on the device: channels-first float64, channels-last float16 (summed in
    float32) with 40 channels (two blocks of 32)."""
    rng = _rng()
    g, gl = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 2, 40)).astype(np.float16)
    return ({"g": g, "gl": gl}, lambda d: (G.conv_bias(d["g"]), G.conv_bias(d["gl"], channels_last=True)),
            lambda h: (h["g"].sum(axis=(0, 2, 3)), h["gl"].astype(np.float64).sum(axis=(0, 1, 2))), False)


def _conv_input_grad_float16():
    """float16: the weight is widened to float32 on the device. Small integers keep every
    value exact in float16, so the float64 reference applies unrounded."""
    rng = _rng()
    w = rng.integers(-3, 4, (2, 2, 3, 3)).astype(np.float16)
    g = rng.integers(-3, 4, (1, 2, 4, 5)).astype(np.float16)

    def call(d):
        return G.conv2d_input((1, 2, 4, 5), d["w"], d["g"], padding=1, padding_mode="circular")

    def expected(h):
        w64 = h["w"].astype(np.float64)
        return _linear_grad(lambda v: ref.conv(v, w64, padding=1, padding_mode="circular"), np.zeros((1, 2, 4, 5)),
                            h["g"].astype(np.float64))

    return {"w": w, "g": g}, call, expected, False


def _pool_grads():
    """max pooling's gradient (its indices computed on the device) and adaptive average pooling's."""
    x = _rng().standard_normal((1, 2, 5, 4))
    g_max = _rng().standard_normal(ref.max_pool(x, 2, 2, ceil_mode=True).shape)
    g_avg = _rng().standard_normal((1, 2, 3, 3))

    def call(d):
        return (G.max_pool2d(d["g_max"], d["x"], 2, 2, ceil_mode=True),
                G.adaptive_avg_pool2d(d["g_avg"], d["x"], (3, 3)))

    def expected(h):
        _, idx = ref.max_pool(h["x"], 2, 2, ceil_mode=True, return_indices=True)
        return (_routed(h["x"], idx, h["g_max"]),
                _linear_grad(lambda v: ref.adaptive_avg_pool(v, (3, 3)), h["x"], h["g_avg"]))

    return {"x": x, "g_max": g_max, "g_avg": g_avg}, call, expected, False


def _lp_inf_grad_float16():
    """Lp pooling's gradient at p = inf routes through |x|, taken on the device (float16: in
    float32, stored back exactly)."""
    x = _rng().standard_normal((1, 2, 4, 4)).astype(np.float16)
    g = _rng().standard_normal((1, 2, 2, 2)).astype(np.float16)

    def expected(h):
        x64 = h["x"].astype(np.float64)
        _, idx = ref.max_pool(np.abs(x64), 2, return_indices=True)
        return _routed(x64, idx, h["g"]) * np.sign(x64)

    return {"x": x, "g": g}, lambda d: G.lp_pool2d(d["g"], d["x"], np.inf, 2), expected, False


def _max_pool_grad_given_indices():
    """Indices the caller passes are checked on the host: the one call here that reads device
    values back, and so waits, for the user's stream alone."""
    x = _rng().standard_normal((1, 2, 4, 5))
    _, idx = ref.max_pool(x, 2, 1, return_indices=True)
    g = _rng().standard_normal(idx.shape)
    return ({"x": x, "g": g, "idx": idx}, lambda d: G.max_pool2d(d["g"], d["x"], 2, 1, indices=d["idx"]),
            lambda h: _routed(h["x"], h["idx"], h["g"]), True)


CASES = {f.__name__.lstrip("_"): f for f in (
    _conv_reflect_noncontiguous, _conv_im2col_bias_relu, _depthwise_channels_last, _conv_transpose,
    _max_pool_indices, _avg_pool, _adaptive, _pyramid, _conv_grads, _gemm_grads, _depthwise_grads,
    _depthwise_stride1_input_grad, _bias_grads, _conv_input_grad_float16, _pool_grads, _pyramid_grads,
    _lp_inf_grad_float16, _max_pool_grad_given_indices)}


def _check_reference(host, got, expected):
    want = expected(host)
    for a, b in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        tol = (RTOL, ATOL) if a.dtype != np.float16 else (1e-3, 1e-3)  # float16 cases are exact but for rounding
        np.testing.assert_allclose(a.astype(np.float64), b, rtol=tol[0], atol=tol[1])


@pytest.mark.parametrize("name", list(CASES))
def test_op_on_user_stream(name, record):
    """The call on a user stream: the reference's result, bitwise the default stream's, and
    every launch, allocation and copy given the user's stream (the recording is checked to
    see the default stream's calls too, so it is not vacuous)."""
    host, call, expected, reads_host = CASES[name]()
    dev = {k: cuda.to_device(v) for k, v in host.items()}
    record.clear()
    default = _host(call(dev))
    assert record.launches and {s for _, s in record.launches} == {0}
    assert {s for _, s in record.memory} <= {0}

    s = cuda.stream()
    record.clear()
    with FC.stream(s):
        result = call(dev)
    launches, memory, syncs = record.launches, record.memory, record.syncs
    assert launches, "no kernel launch was recorded"
    assert [k for k, st in launches if st is not s] == [], "launches not on the user's stream"
    assert [m for m in memory if m[1] is not s] == [], "allocations or copies not on the user's stream"
    assert all(w is s for w in syncs), f"waited for something other than the user's stream: {syncs}"
    if reads_host:
        assert syncs, "the host read did not wait for the user's stream"
    else:
        assert syncs == [], "a call on device arrays waited on the host"
    got = _host(result)
    for a, b in zip(got if isinstance(got, tuple) else (got,), default if isinstance(default, tuple) else (default,)):
        assert np.array_equal(a, b), "the user stream's result differs from the default stream's"
    _check_reference(host, got, expected)


def test_results_are_bound_to_no_stream():
    """A result's later copy_to_host() by the user must not be silently asynchronous on the
    stream the call ran on."""
    x = cuda.to_device(_rng().standard_normal((1, 2, 4, 4)))
    with FC.stream(cuda.stream()):
        ys = [F.conv2d(x, cuda.to_device(np.ones((1, 2, 1, 1))), algo="gemm"), F.avg_pool2d(x, 2),
              *F.max_pool2d(x, 2, return_indices=True), F.spatial_pyramid_pool(x, (1,))]
    assert [getattr(y, "stream", 0) for y in ys] == [0] * len(ys)


def test_numpy_input_with_device_cuda(record):
    """device="cuda" with NumPy input: copied in, run, copied back, all on the user's stream,
    which alone is waited for (the caller asked for host data)."""
    x, w = _rng().standard_normal((1, 2, 9)), _rng().standard_normal((3, 2, 3))
    s = cuda.stream()
    record.clear()
    with FC.stream(s):
        y = F.conv1d(x, w, padding=2, dilation=2, device="cuda")
    assert isinstance(y, np.ndarray)
    np.testing.assert_allclose(y, ref.conv(x, w, padding=2, dilation=2), rtol=RTOL, atol=ATOL)
    assert [m for m in record.memory if m[1] is not s] == []
    assert ("to_device", s) in record.memory and ("copy_to_host", s) in record.memory
    assert [k for k, st in record.launches if st is not s] == []
    assert record.syncs and all(w is s for w in record.syncs)


def test_stream_is_per_thread_and_nests():
    s, t = cuda.stream(), cuda.stream()
    seen = {}
    with FC.stream(s):
        worker = threading.Thread(target=lambda: seen.setdefault("other thread", FC.current_stream()))
        worker.start()
        worker.join()
        with FC.stream(t):
            seen["inner"] = FC.current_stream()
            with FC.stream(None):
                seen["none"] = FC.current_stream()
        seen["outer"] = FC.current_stream()
    assert seen == {"other thread": 0, "inner": t, "none": 0, "outer": s}
    assert FC.current_stream() == 0


def test_stream_argument_kinds(monkeypatch):
    """Numba streams as they are; a torch.cuda.Stream (cuda_stream) or cupy.cuda.Stream (ptr)
    through numba.cuda.external_stream; anything else a TypeError naming the argument."""
    wrapped = {}
    monkeypatch.setattr(cuda, "external_stream", lambda ptr: wrapped.setdefault(ptr, cuda.stream()))
    s = cuda.stream()
    assert streams.as_numba_stream(s) is s
    assert streams.as_numba_stream(None) == 0 and streams.as_numba_stream(0) == 0
    assert streams.as_numba_stream(SimpleNamespace(cuda_stream=0x7F00)) is wrapped[0x7F00]
    assert streams.as_numba_stream(SimpleNamespace(ptr=0x7E00)) is wrapped[0x7E00]
    for bad in (5, "s", True, SimpleNamespace(ptr="x")):
        with pytest.raises(TypeError, match=r"fastconv\.cuda\.stream: s must be a Numba stream .* got "):
            streams.as_numba_stream(bad)


def test_cuda_array_interface_producer_stream_is_waited_on_the_device(monkeypatch):
    """An input whose producer exported another stream (CUDA Array Interface v3) is ordered by
    an event the user's stream waits for, not by a host synchronisation. Stand-ins take the
    place of the interface import and the event, which the simulator lacks; a real GPU runs
    them."""
    host = _rng().standard_normal((2, 3))
    producer, s = cuda.stream(), cuda.stream()
    calls = []
    monkeypatch.setattr(cuda, "external_stream", lambda ptr: calls.append(("external", ptr)) or producer,
                        raising=False)
    monkeypatch.setattr(cuda, "from_cuda_array_interface",
                        lambda desc, owner, sync: calls.append(("import", sync)) or cuda.to_device(host),
                        raising=False)

    class Event:
        def record(self, stream):
            calls.append(("record", stream))

        def wait(self, stream):
            calls.append(("wait", stream))

    monkeypatch.setattr(cuda, "event", lambda timing=True: Event(), raising=False)
    monkeypatch.setattr(type(s), "__int__", lambda self: 0x5000 if self is s else 0x6000, raising=False)
    exported = SimpleNamespace(__cuda_array_interface__={"shape": (2, 3), "typestr": "<f8", "data": (1, False),
                                                         "version": 3, "stream": 0x6000})
    with FC.stream(s):
        arr = streams.as_device(exported)
        assert calls == [("import", False), ("external", 0x6000), ("record", producer), ("wait", s)]
        calls.clear()
        exported.__cuda_array_interface__["stream"] = 0x5000  # produced on the user's stream: nothing to wait for
        streams.as_device(exported)
        assert calls == [("import", False)]
    np.testing.assert_array_equal(arr.copy_to_host(), host)


def test_torch_bridge_uses_torch_current_stream(monkeypatch, record):
    """fastconv.torch's CUDA path (``_tensors.run``): the call runs on PyTorch's current stream,
    wrapped once per stream by numba.cuda.external_stream, and follows it when it changes.

    The project's torch is the CPU build: a stand-in replaces ``torch.cuda.current_stream``
    (its stream pointer) and ``numba.cuda.external_stream`` (the simulator has none), and the
    op gets simulator device arrays. On a real GPU the tensors come through
    ``__cuda_array_interface__`` and PyTorch's own kernels queued before and after the call
    on the same stream are ordered with it, which is what this cannot show."""
    torch = pytest.importorskip("torch")
    from fastconv.torch import _tensors

    wrapped = {}

    def external_stream(ptr):
        assert ptr not in wrapped, "external_stream called twice for one stream"
        return wrapped.setdefault(ptr, cuda.stream())

    current = {"ptr": 0x1000}
    monkeypatch.setattr(cuda, "external_stream", external_stream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: SimpleNamespace(cuda_stream=current["ptr"]))
    monkeypatch.setattr(_tensors, "_NUMBA_STREAMS", {})
    tensor = SimpleNamespace(is_cuda=True, device=torch.device("cuda", 0))
    x, w = _rng().standard_normal((1, 2, 4, 4)), _rng().standard_normal((2, 2, 3, 3))
    dx, dw = cuda.to_device(x), cuda.to_device(w)
    for ptr in (0x1000, 0x2000, 0x1000, 0):
        current["ptr"] = ptr
        record.clear()
        y = _tensors.run(tensor, F.conv2d, dx, dw, padding=1, padding_mode="circular")
        assert record.launches and {st for _, st in record.launches} == {wrapped[ptr]}
        assert {st for _, st in record.memory} == {wrapped[ptr]}
        assert record.syncs == []
        np.testing.assert_allclose(y.copy_to_host(), ref.conv(x, w, padding=1, padding_mode="circular"),
                                   rtol=RTOL, atol=ATOL)
    assert sorted(wrapped) == [0, 0x1000, 0x2000]
    assert FC.current_stream() == 0
    cpu = SimpleNamespace(is_cuda=False)
    record.clear()
    _tensors.run(cpu, F.avg_pool2d, x, 2)
    assert record.launches == []
