"""fastconv.torch: the ops against torch.nn.functional and autograd (float64), opcheck on the
sample registry, memory sharing, the nn twins, convert, state_dict round trips, a short
training run and torch.compile."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as TF  # noqa: E402

import fastconv  # noqa: E402
import fastconv.torch as FT  # noqa: E402
from fastconv.testing.registry import samples  # noqa: E402
from fastconv.torch import _conv_ops, _eager  # noqa: E402
from fastconv.torch._tensors import as_array, as_tensor  # noqa: E402

D = torch.float64


def _t(*shape, positive=False, seed=0):
    g = torch.Generator().manual_seed(seed + sum(shape))
    x = torch.randn(*shape, generator=g, dtype=D)
    return (x.abs() + 0.1 if positive else x).requires_grad_()


# Each case: fastconv.torch call, torch reference, input shapes (tensors get gradients).
CASES = {
    "conv1d_grouped": (lambda x, w, b: FT.conv1d(x, w, b, stride=2, padding=1, dilation=2, groups=2),
                       lambda x, w, b: TF.conv1d(x, w, b, stride=2, padding=1, dilation=2, groups=2),
                       [(2, 4, 11), (6, 2, 3), (6,)], {}),
    "conv2d_relu": (lambda x, w, b: FT.conv2d(x, w, b, padding=1, activation="relu"),
                    lambda x, w, b: TF.conv2d(x, w, b, padding=1).relu(), [(2, 3, 7, 6), (4, 3, 3, 3), (4,)], {}),
    "conv2d_reflect_relu6": (lambda x, w, b: FT.conv2d(x, w, b, padding=(1, 2), padding_mode="reflect",
                                                       activation="relu6"),
                             lambda x, w, b: TF.conv2d(TF.pad(x, (2, 2, 1, 1), mode="reflect"), w, b).clamp(0, 6),
                             [(1, 2, 6, 7), (3, 2, 3, 3), (3,)], {}),
    "conv2d_depthwise_stride": (lambda x, w, b: FT.depthwise_conv2d(x, w, b, stride=2, padding=1),
                                lambda x, w, b: TF.conv2d(x, w, b, stride=2, padding=1, groups=4),
                                [(2, 4, 7, 7), (4, 1, 3, 3), (4,)], {}),
    "conv2d_channels_last_format_relu": (
        lambda x, w, b: FT.conv2d(x.to(memory_format=torch.channels_last), w, b, stride=(2, 1), padding=1,
                                  activation="relu"),
        lambda x, w, b: TF.conv2d(x, w, b, stride=(2, 1), padding=1).relu(), [(2, 3, 7, 6), (4, 3, 3, 3), (4,)], {}),
    "conv3d": (lambda x, w, b: FT.conv3d(x, w, b, padding=1),
               lambda x, w, b: TF.conv3d(x, w, b, padding=1), [(1, 2, 4, 5, 4), (3, 2, 3, 3, 3), (3,)], {}),
    "conv_transpose1d": (lambda x, w, b: FT.conv_transpose1d(x, w, b, stride=2, padding=1, output_padding=1),
                         lambda x, w, b: TF.conv_transpose1d(x, w, b, stride=2, padding=1, output_padding=1),
                         [(2, 3, 6), (3, 2, 3), (2,)], {}),
    "conv_transpose2d_output_size": (
        lambda x, w, b: FT.conv_transpose2d(x, w, b, stride=2, padding=1, output_size=(10, 9)),
        lambda x, w, b: TF.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=(1, 0)),
        [(1, 2, 5, 5), (2, 3, 3, 3), (3,)], {}),
    "conv_transpose2d_channels_last_format_output_size": (
        lambda x, w, b: FT.conv_transpose2d(x.to(memory_format=torch.channels_last), w, b, stride=2, padding=1,
                                            output_size=(10, 9)),
        lambda x, w, b: TF.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=(1, 0)),
        [(1, 2, 5, 5), (2, 3, 3, 3), (3,)], {}),
    "conv_transpose3d_channels_last_format": (
        lambda x, w, b: FT.conv_transpose3d(x.to(memory_format=torch.channels_last_3d), w, b, stride=2),
        lambda x, w, b: TF.conv_transpose3d(x, w, b, stride=2), [(1, 2, 3, 3, 2), (2, 2, 2, 2, 2), (2,)], {}),
    "conv_transpose3d": (lambda x, w, b: FT.conv_transpose3d(x, w, b, stride=2),
                         lambda x, w, b: TF.conv_transpose3d(x, w, b, stride=2),
                         [(1, 2, 3, 3, 2), (2, 2, 2, 2, 2), (2,)], {}),
    "max_pool1d": (lambda x: FT.max_pool1d(x, 3, 2, 1), lambda x: TF.max_pool1d(x, 3, 2, 1), [(2, 3, 9)], {}),
    "max_pool2d_ceil": (lambda x: FT.max_pool2d(x, 3, 2, 1, ceil_mode=True),
                        lambda x: TF.max_pool2d(x, 3, 2, 1, ceil_mode=True), [(2, 2, 8, 7)], {}),
    "max_pool3d": (lambda x: FT.max_pool3d(x, 2), lambda x: TF.max_pool3d(x, 2), [(1, 2, 4, 4, 6)], {}),
    "avg_pool1d": (lambda x: FT.avg_pool1d(x, 3, 2, 1), lambda x: TF.avg_pool1d(x, 3, 2, 1), [(2, 3, 9)], {}),
    "avg_pool2d_exclude_pad": (lambda x: FT.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
                               lambda x: TF.avg_pool2d(x, 3, 2, 1, count_include_pad=False), [(2, 2, 7, 8)], {}),
    "avg_pool3d": (lambda x: FT.avg_pool3d(x, 2), lambda x: TF.avg_pool3d(x, 2), [(1, 2, 4, 4, 4)], {}),
    "lp_pool1d": (lambda x: FT.lp_pool1d(x, 2, 3), lambda x: TF.lp_pool1d(x, 2, 3), [(1, 2, 9)],
                  {"positive": True}),
    "lp_pool2d": (lambda x: FT.lp_pool2d(x, 3, 2), lambda x: TF.lp_pool2d(x, 3, 2), [(1, 2, 6, 6)],
                  {"positive": True}),
    "lp_pool3d": (lambda x: FT.lp_pool3d(x, 2, 2), lambda x: TF.lp_pool3d(x, 2, 2), [(1, 2, 4, 4, 4)],
                  {"positive": True}),
    "adaptive_avg_pool1d": (lambda x: FT.adaptive_avg_pool1d(x, 4), lambda x: TF.adaptive_avg_pool1d(x, 4),
                            [(2, 3, 9)], {}),
    "adaptive_avg_pool2d": (lambda x: FT.adaptive_avg_pool2d(x, (3, None)),
                            lambda x: TF.adaptive_avg_pool2d(x, (3, None)), [(1, 2, 7, 5)], {}),
    "adaptive_avg_pool3d": (lambda x: FT.adaptive_avg_pool3d(x, 2), lambda x: TF.adaptive_avg_pool3d(x, 2),
                            [(1, 2, 3, 5, 4)], {}),
    "adaptive_max_pool1d": (lambda x: FT.adaptive_max_pool1d(x, 4), lambda x: TF.adaptive_max_pool1d(x, 4),
                            [(2, 3, 9)], {}),
    "adaptive_max_pool2d": (lambda x: FT.adaptive_max_pool2d(x, (3, 2)), lambda x: TF.adaptive_max_pool2d(x, (3, 2)),
                            [(1, 2, 7, 5)], {}),
    "adaptive_max_pool3d": (lambda x: FT.adaptive_max_pool3d(x, 2), lambda x: TF.adaptive_max_pool3d(x, 2),
                            [(1, 2, 3, 5, 4)], {}),
    "global_avg_pool": (FT.global_avg_pool, lambda x: x.mean((2, 3), keepdim=True), [(2, 3, 4, 5)], {}),
    "global_max_pool": (FT.global_max_pool, lambda x: x.amax((2, 3), keepdim=True), [(2, 3, 4, 5)], {}),
    "spatial_pyramid_pool": (
        lambda x: FT.spatial_pyramid_pool(x, (1, 2)),
        lambda x: torch.cat([TF.adaptive_max_pool2d(x, n).flatten(1) for n in (1, 2)], 1), [(2, 3, 6, 6)], {}),
    "unfold": (lambda x: FT.unfold(x, (2, 3), stride=1, padding=1),
               lambda x: TF.unfold(x, (2, 3), padding=1), [(1, 2, 5, 6)], {}),
    "fold": (lambda c: FT.fold(c, (4, 5), 2), lambda c: TF.fold(c, (4, 5), 2), [(1, 8, 12)], {}),
    "separable_relu": (lambda x, dw, pw, b, db: FT.separable_conv2d(x, dw, pw, b, padding=1, depthwise_bias=db,
                                                                     activation="relu"),
                       lambda x, dw, pw, b, db: TF.conv2d(TF.conv2d(x, dw, db, padding=1, groups=3), pw, b).relu(),
                       [(2, 3, 6, 5), (3, 1, 3, 3), (5, 3, 1, 1), (5,), (3,)], {}),
    "separable_channels_last_format_relu": (
        lambda x, dw, pw, b, db: FT.separable_conv2d(x.to(memory_format=torch.channels_last), dw, pw, b, padding=1,
                                                     depthwise_bias=db, activation="relu"),
        lambda x, dw, pw, b, db: TF.conv2d(TF.conv2d(x, dw, db, padding=1, groups=3), pw, b).relu(),
        [(2, 3, 6, 5), (3, 1, 3, 3), (5, 3, 1, 1), (5,), (3,)], {}),
    "separable_channels_last_stride": (
        lambda x, dw, pw: FT.separable_conv2d(x.permute(0, 2, 3, 1), dw, pw, stride=2, padding="same",
                                              channels_last=True, algo="fused").permute(0, 3, 1, 2),
        lambda x, dw, pw: TF.conv2d(TF.conv2d(x, dw, stride=2, padding=1, groups=4), pw[:, :, None, None]),
        [(1, 4, 7, 7), (4, 1, 3, 3), (33, 4)], {}),  # the fused kernel specialisation of test_separable
    "max_unpool2d": (lambda x: FT.max_unpool2d(x, _unpool_indices(x), 2),
                     lambda x: TF.max_unpool2d(x, _unpool_indices(x), 2), [(1, 2, 3, 3)], {}),
}


def _unpool_indices(x):
    """Valid max_unpool2d indices for a (1, 2, 3, 3) input: a max pooling's of a 6x6 plane."""
    g = torch.Generator().manual_seed(1)
    return TF.max_pool2d(torch.randn(1, 2, 6, 6, generator=g), 2, return_indices=True)[1]


def _path(path):
    """The calls' path: "eager" (the kernel functions under autograd.Function, the default
    in plain eager mode) or "ops" (the registered torch.ops.fastconv ops)."""
    return _eager.disabled() if path == "ops" else contextlib.nullcontext()


def _forward_and_gradients(name, path):
    fast, ref, shapes, opts = CASES[name]
    inputs = [_t(*s, positive=opts.get("positive", False), seed=i) for i, s in enumerate(shapes)]
    with _path(path):
        got = fast(*inputs)
        g = torch.randn(got.shape, generator=torch.Generator().manual_seed(7), dtype=D)
        return inputs, got, torch.autograd.grad(got, inputs, g), ref, g


@pytest.mark.parametrize("path", ["eager", "ops"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_and_gradients_match_torch(name, path):
    inputs, got, got_grads, ref, g = _forward_and_gradients(name, path)
    want = ref(*inputs)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    want_grads = torch.autograd.grad(want, inputs, g)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["conv2d_relu", "conv2d_channels_last_format_relu", "conv_transpose2d_output_size",
                                  "conv_transpose2d_channels_last_format_output_size", "max_pool2d_ceil", "lp_pool2d",
                                  "adaptive_max_pool2d", "separable_relu", "separable_channels_last_format_relu"])
def test_eager_and_op_paths_agree_exactly(name):
    _, got, grads, _, _ = _forward_and_gradients(name, "eager")
    assert type(got.grad_fn).__name__ == "_EagerBackward"
    _, op_got, op_grads, _, _ = _forward_and_gradients(name, "ops")
    assert type(op_got.grad_fn).__name__ != "_EagerBackward"
    assert torch.equal(got, op_got)
    for a, b in zip(grads, op_grads):
        assert torch.equal(a, b)


def test_fractional_max_pool_gradient_goes_to_the_returned_indices():
    x = _t(1, 2, 9, 9)
    y, idx = FT.fractional_max_pool2d(x, 2, output_size=4, return_indices=True, seed=3)
    want, _ = fastconv.fractional_max_pool2d(x.detach().numpy(), 2, output_size=4, return_indices=True, seed=3)
    np.testing.assert_array_equal(y.detach().numpy(), want)
    (gx,) = torch.autograd.grad(y.sum(), x)
    counts = torch.zeros(1, 2, 81, dtype=D).scatter_add(2, idx.flatten(2), torch.ones(1, 2, 16, dtype=D))
    torch.testing.assert_close(gx, counts.reshape(1, 2, 9, 9))


def test_separable_is_one_call_of_the_separable_op(monkeypatch):
    x, dw, pw = _t(1, 6, 6, 3).detach(), _t(3, 1, 3, 3).detach(), _t(5, 3, 1, 1).detach()
    seen = []
    separable = fastconv.separable_conv2d
    monkeypatch.setattr(fastconv, "separable_conv2d", lambda *a, **k: seen.append(k["algo"]) or separable(*a, **k))
    want = TF.conv2d(TF.conv2d(x.permute(0, 3, 1, 2), dw, padding=1, groups=3), pw).permute(0, 2, 3, 1)
    for path in ("eager", "ops"):
        with _path(path):
            torch.testing.assert_close(FT.separable_conv2d(x, dw, pw, padding=1, algo="fused", channels_last=True),
                                       want)
    assert seen == ["fused", "fused"]


# ---- memory ----------------------------------------------------------------------------

def test_cpu_tensors_share_memory_with_numpy_both_ways():
    x = torch.randn(2, 3, 5, 5)
    a = as_array(x)
    assert a.ctypes.data == x.data_ptr()
    out = np.ones((2, 3), np.float32)
    t = as_tensor(out, (a,))
    assert t.data_ptr() == out.ctypes.data
    # a result that is a view of an input is copied (a registered op may not alias its inputs)
    assert as_tensor(a[:1], (a,)).data_ptr() != x.data_ptr()


def test_channels_last_tensor_stays_channels_last_without_copy(monkeypatch):
    x = torch.randn(2, 3, 6, 6).to(memory_format=torch.channels_last)
    w = torch.randn(4, 3, 3, 3)
    seen = []

    def spy(tensor, *permuted):
        array = as_array(tensor, *permuted)
        if tensor is not None:
            seen.append((tensor.data_ptr(), array.ctypes.data, array.flags.c_contiguous))
        return array

    monkeypatch.setattr(_conv_ops, "as_array", spy)
    y = FT.conv2d(x, w, padding=1)
    assert seen[0] == (x.data_ptr(), x.data_ptr(), True)  # the input arrives as its own NHWC memory
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, TF.conv2d(x, w, padding=1), rtol=1e-5, atol=1e-5)
    x_nc = torch.randn(2, 3, 8, 6)[:, :, ::2]  # non-contiguous channels-first
    torch.testing.assert_close(FT.conv2d(x_nc, w), TF.conv2d(x_nc, w), rtol=1e-5, atol=1e-5)


def test_meta_tensors_get_shapes_from_the_fake_kernels():
    x, w = torch.empty(2, 3, 8, 8, device="meta", requires_grad=True), torch.empty(4, 3, 3, 3, device="meta")
    assert FT.conv2d(x, w, stride=2, padding="same").shape == (2, 4, 4, 4)
    assert FT.separable_conv2d(x, torch.empty(3, 1, 3, 3, device="meta"), torch.empty(5, 3, device="meta"),
                               padding=1).shape == (2, 5, 8, 8)


def test_double_backward_says_it_is_not_implemented():
    x, w = _t(1, 2, 5, 5), _t(3, 2, 3, 3)
    (gx,) = torch.autograd.grad(FT.conv2d(x, w).sum(), x, create_graph=True)
    with pytest.raises(NotImplementedError, match="double backward"):
        gx.sum().backward()


def test_channels_last_and_unbatched_gradients_match_torch():
    x = _t(2, 3, 7, 7).detach().to(memory_format=torch.channels_last).requires_grad_()
    w, b = _t(4, 3, 3, 3), _t(4)
    got = FT.max_pool2d(FT.conv2d(x, w, b, padding=1, activation="relu"), 2)
    want = TF.max_pool2d(TF.conv2d(x, w, b, padding=1).relu(), 2)
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, want)
    for a, c in zip(torch.autograd.grad(got.sum(), (x, w, b)), torch.autograd.grad(want.sum(), (x, w, b))):
        torch.testing.assert_close(a, c)
    u = _t(3, 7, 7)
    torch.testing.assert_close(FT.avg_pool2d(FT.conv2d(u, w, padding=1), 2), TF.avg_pool2d(TF.conv2d(u, w, padding=1), 2))


def test_weight_gradient_comes_in_the_weights_memory_format():
    """A channels_last weight's gradient is channels_last too, so autograd keeps it as it is
    (AccumulateGrad copies one of other strides); contiguous weights keep contiguous ones."""
    for ours, theirs, weight_shape, fmt in ((FT.conv2d, TF.conv2d, (4, 3, 3, 3), torch.channels_last),
                                            (FT.conv3d, TF.conv3d, (4, 3, 2, 3, 3), torch.channels_last_3d)):
        x = _t(2, 3, *([6] * (len(weight_shape) - 2))).detach().contiguous(memory_format=fmt)
        for weight_format in (fmt, torch.contiguous_format):
            w = _t(*weight_shape).detach().contiguous(memory_format=weight_format).requires_grad_()
            w_torch = w.detach().clone().requires_grad_()
            ours(x, w, padding=1).square().sum().backward()
            theirs(x, w_torch, padding=1).square().sum().backward()
            assert w.grad.stride() == w.stride()
            torch.testing.assert_close(w.grad, w_torch.grad)


def test_depthwise_channels_last_backward_in_one_call(monkeypatch):
    """Input and weight gradients come from one fastconv.grad.conv2d_backward call (a repeated
    channels-last depthwise layer takes its one-pass kernel), equal to torch's."""
    calls = []
    real = _conv_ops.BACKWARD[2]
    monkeypatch.setitem(_conv_ops.BACKWARD, 2, lambda *a, **k: calls.append(k) or real(*a, **k))
    x = _t(2, 6, 9, 8).detach().to(memory_format=torch.channels_last)
    w = _t(6, 1, 3, 3)
    for _ in range(2):
        xs, ws, xt, wt = (t.detach().requires_grad_() for t in (x, w, x, w))
        FT.conv2d(xs, ws, padding=1, groups=6).square().sum().backward()
        TF.conv2d(xt, wt, padding=1, groups=6).square().sum().backward()
        torch.testing.assert_close(xs.grad, xt.grad)
        torch.testing.assert_close(ws.grad, wt.grad)
    assert len(calls) == 2 and all(k["channels_last"] for k in calls)


def test_eager_conv_saves_only_what_its_gradients_read():
    """A frozen weight's layer keeps no input (only the weight's gradient reads it); the
    gradients are torch's either way, in both layouts."""
    for fmt in (torch.contiguous_format, torch.channels_last):
        x, w = _t(2, 3, 7, 7).contiguous(memory_format=fmt), _t(4, 3, 3, 3)
        for x_grad, w_grad in ((True, False), (False, True), (True, True)):
            xs, ws = x.detach().requires_grad_(x_grad), w.detach().requires_grad_(w_grad)
            y = FT.conv2d(xs, ws, stride=2, padding=1)
            assert (y.grad_fn.saved_tensors[0] is not None) == w_grad
            wanted = [t for t in (xs, ws) if t.requires_grad]
            got = torch.autograd.grad(y.sum(), wanted)
            want = torch.autograd.grad(TF.conv2d(xs, ws, stride=2, padding=1).sum(), wanted)
            for a, c in zip(got, want):
                torch.testing.assert_close(a, c)


def test_bad_arguments_name_themselves():
    x, w = torch.randn(1, 3, 5, 5), torch.randn(4, 3, 3, 3)
    with pytest.raises(TypeError, match="stride"):
        FT.conv2d(x, w, stride="x")
    with pytest.raises(TypeError, match="weight"):
        FT.conv2d(x, np.ones((4, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match="channels"):
        FT.conv2d(x, torch.randn(4, 2, 3, 3))
    with pytest.raises(TypeError, match="bfloat16"):
        FT.conv2d(x.bfloat16(), w.bfloat16())


# ---- opcheck over the sample registry ------------------------------------------------------

class _Recorder(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "fastconv":
            self.calls.append((func, args, kwargs or {}))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("sample", samples(tags={"every_op"}), ids=str)
def test_opcheck(sample):
    rng = np.random.default_rng(0)
    tensors = [torch.from_numpy(a).requires_grad_(a.dtype.kind == "f") for a in sample.arrays(rng)]
    recorder = _Recorder()
    with recorder:
        out = sample.call(FT, tensors)
        values = out[0] if isinstance(out, tuple) else out
        if values.requires_grad:  # the gradient ops are ops too
            values.sum().backward()
    assert recorder.calls
    for func, args, kwargs in recorder.calls:
        if func.name().endswith("_grad"):  # gradient ops have no second derivative to check
            args = [a.detach() if isinstance(a, torch.Tensor) else a for a in args]
        torch.library.opcheck(func, args, kwargs)


# ---- nn, convert, state_dict ------------------------------------------------------------------

class _Subclassed(torch.nn.Conv2d):
    """A user's Conv2d subclass: convert leaves it (its forward may differ)."""


def _every_layer_model():
    nn = torch.nn
    return nn.ModuleDict({
        "c1": nn.Conv1d(2, 4, 3, padding=1), "c2": nn.Conv2d(2, 4, 3, padding="same", padding_mode="reflect"),
        "c3": nn.Conv3d(2, 4, 3, padding=1), "t1": nn.ConvTranspose1d(2, 4, 2, stride=2),
        "t2": nn.ConvTranspose2d(2, 4, 3, stride=2, padding=1, output_padding=1),
        "t3": nn.ConvTranspose3d(2, 4, 2, stride=2),
        "m1": nn.MaxPool1d(2), "m2": nn.MaxPool2d(3, 2, 1), "m3": nn.MaxPool3d(2),
        "a1": nn.AvgPool1d(2), "a2": nn.AvgPool2d(3, 2, 1, count_include_pad=False), "a3": nn.AvgPool3d(2),
        "l1": nn.LPPool1d(2, 2), "l2": nn.LPPool2d(2, 2), "l3": nn.LPPool3d(2, 2),
        "aa1": nn.AdaptiveAvgPool1d(3), "aa2": nn.AdaptiveAvgPool2d((2, 3)), "aa3": nn.AdaptiveAvgPool3d(2),
        "am1": nn.AdaptiveMaxPool1d(3), "am2": nn.AdaptiveMaxPool2d(2), "am3": nn.AdaptiveMaxPool3d(2),
        "sub": _Subclassed(2, 2, 1), "unpool": nn.MaxUnpool2d(2), "bn": nn.BatchNorm2d(2),
    }).double()


def test_convert_swaps_every_supported_layer_and_reports_the_rest():
    model = _every_layer_model()
    converted, report = FT.convert(model)
    swapped = {name for name, _ in report.swapped}
    assert swapped == set(model.keys()) - {"sub", "unpool", "bn"}
    assert {name for name, _ in report.left} == {"sub", "unpool"}
    assert type(model["c2"]) is torch.nn.Conv2d  # not inplace: the original is untouched
    assert converted["c2"].weight is model["c2"].weight
    inputs = {1: _t(2, 2, 8, positive=True), 2: _t(1, 2, 8, 8, positive=True), 3: _t(1, 2, 4, 4, 4, positive=True)}
    for name in swapped:
        nd = int(type(model[name]).__name__[-2])
        torch.testing.assert_close(converted[name](inputs[nd]), model[name](inputs[nd]))


def test_nn_extras_and_state_dict_round_trips():
    ours = FT.nn.Conv2d(3, 4, 3, stride=2, padding="same", padding_mode="symmetric", activation="relu").double()
    theirs = torch.nn.Conv2d(3, 4, 3).double()
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    theirs.load_state_dict(ours.state_dict())
    ours.load_state_dict(theirs.state_dict())
    x = _t(1, 3, 7, 7)
    want = TF.conv2d(TF.pad(x, (1, 1, 1, 1), mode="replicate"), theirs.weight, theirs.bias, stride=2).relu()
    torch.testing.assert_close(ours(x), want)
    t = FT.nn.ConvTranspose2d(3, 2, 3, stride=2)
    assert t.state_dict().keys() == torch.nn.ConvTranspose2d(3, 2, 3).state_dict().keys()
    assert FT.nn.Conv2d(3, 4, 3, padding=((0, 1), (1, 0)))(torch.randn(1, 3, 5, 5)).shape == (1, 4, 4, 4)


def _resnet_like():
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
            self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

        def forward(self, x):
            return (x + self.bn2(self.conv2(self.bn1(self.conv1(x)).relu()))).relu()

    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.MaxPool2d(3, 2, 1), Block(8), Block(8), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 10))


def test_converted_resnet_like_model_gives_the_same_outputs():
    torch.manual_seed(0)
    model = _resnet_like().eval()
    converted, report = FT.convert(model)
    assert len(report.swapped) == 7
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(converted(x), model(x), rtol=1e-4, atol=1e-5)
    xl = x.to(memory_format=torch.channels_last)
    torch.testing.assert_close(converted(xl), model(x), rtol=1e-4, atol=1e-5)


def test_training_losses_track_pure_pytorch():
    torch.manual_seed(0)
    reference = _resnet_like()
    ours, _ = FT.convert(reference)  # shares the parameters: train on separate copies
    ours.load_state_dict(reference.state_dict())
    import copy
    ours = copy.deepcopy(ours)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(20, 8, 3, 16, 16, generator=g), torch.randint(0, 10, (20, 8), generator=g)
    losses = []
    for model in (reference, ours):
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        run = []
        for step in range(20):
            opt.zero_grad()
            loss = TF.cross_entropy(model(x[step]), y[step])
            loss.backward()
            opt.step()
            run.append(loss.item())
        losses.append(run)
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-3, atol=1e-4)
    assert losses[1][-1] < losses[1][0]


def test_compile_fullgraph_forward_and_backward_match_eager():
    torch.manual_seed(0)
    model = torch.nn.Sequential(FT.nn.Conv2d(2, 3, 3, padding=1, activation="relu"), FT.nn.MaxPool2d(2),
                                FT.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    x = torch.randn(2, 2, 6, 6)
    compiled = torch.compile(model, fullgraph=True)
    out = compiled(x)
    out.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    eager = model(x)
    eager.sum().backward()
    torch.testing.assert_close(out, eager)
    for a, p in zip(grads, model.parameters()):
        torch.testing.assert_close(a, p.grad)


def test_compile_fullgraph_separable_matches_eager():
    torch.manual_seed(0)

    class Separable(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dw, self.pw = torch.nn.Parameter(torch.randn(3, 1, 3, 3)), torch.nn.Parameter(torch.randn(5, 3))
            self.bias = torch.nn.Parameter(torch.randn(5))

        def forward(self, x):
            return FT.separable_conv2d(x, self.dw, self.pw, self.bias, padding=1, activation="relu6",
                                       channels_last=True)

    model, x = Separable(), torch.randn(2, 5, 5, 3)
    out = torch.compile(model, fullgraph=True)(x)
    out.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    eager = model(x)
    eager.sum().backward()
    torch.testing.assert_close(out, eager)
    for a, p in zip(grads, model.parameters()):
        torch.testing.assert_close(a, p.grad)
