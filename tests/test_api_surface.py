"""Every public name of API.md exists, with its arguments in API.md's (PyTorch's) order."""

from __future__ import annotations

import doctest
import inspect

import pytest

import fastconv as F

SIGNATURES = {
    "conv1d": ["input", "weight", "bias", "stride", "padding", "dilation", "groups"],
    "conv2d": ["input", "weight", "bias", "stride", "padding", "dilation", "groups"],
    "conv3d": ["input", "weight", "bias", "stride", "padding", "dilation", "groups"],
    "conv_transpose1d": ["input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation"],
    "conv_transpose2d": ["input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation"],
    "conv_transpose3d": ["input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation"],
    "depthwise_conv2d": ["input", "weight", "bias", "stride", "padding", "dilation"],
    "pointwise_conv2d": ["input", "weight", "bias"],
    "separable_conv2d": ["input", "depthwise_weight", "pointwise_weight", "bias", "stride", "padding", "dilation"],
    "max_pool1d": ["input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"],
    "max_pool2d": ["input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"],
    "max_pool3d": ["input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"],
    "avg_pool1d": ["input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"],
    "avg_pool2d": ["input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"],
    "avg_pool3d": ["input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"],
    "lp_pool1d": ["input", "norm_type", "kernel_size", "stride", "ceil_mode"],
    "lp_pool2d": ["input", "norm_type", "kernel_size", "stride", "ceil_mode"],
    "lp_pool3d": ["input", "norm_type", "kernel_size", "stride", "ceil_mode"],
    "adaptive_avg_pool1d": ["input", "output_size"],
    "adaptive_avg_pool2d": ["input", "output_size"],
    "adaptive_avg_pool3d": ["input", "output_size"],
    "adaptive_max_pool1d": ["input", "output_size", "return_indices"],
    "adaptive_max_pool2d": ["input", "output_size", "return_indices"],
    "adaptive_max_pool3d": ["input", "output_size", "return_indices"],
    "global_avg_pool": ["input"],
    "global_max_pool": ["input"],
    "spatial_pyramid_pool": ["input", "levels", "mode"],
    "unfold": ["input", "kernel_size", "stride", "padding", "dilation"],
    "fold": ["columns", "output_size", "kernel_size", "stride", "padding", "dilation"],
    "max_unpool1d": ["input", "indices", "kernel_size", "stride", "padding", "output_size"],
    "max_unpool2d": ["input", "indices", "kernel_size", "stride", "padding", "output_size"],
    "max_unpool3d": ["input", "indices", "kernel_size", "stride", "padding", "output_size"],
    "fractional_max_pool2d": ["input", "kernel_size", "output_size", "output_ratio", "return_indices", "seed"],
    "conv_output_shape": ["input_shape", "weight_shape", "stride", "padding", "dilation"],
    "conv_flops": [],
    "conv_params": [],
    "receptive_field": ["layers"],
    "algorithms": ["op"],
}
KEYWORDS = {
    "conv2d": ["padding_mode", "algo", "activation", "channels_last", "device"],
    "conv_transpose2d": ["algo", "activation", "channels_last", "device"],
    "max_pool2d": ["channels_last", "device"],
    "avg_pool2d": ["channels_last", "device"],
}
FILTERS = ["sobel", "scharr", "prewitt", "laplacian", "gaussian", "box", "sharpen", "identity"]


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_positional_order(name):
    fn = getattr(F, name)
    params = [p.name for p in inspect.signature(fn).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert params[:len(SIGNATURES[name])] == SIGNATURES[name]


@pytest.mark.parametrize("name", sorted(KEYWORDS))
def test_keywords(name):
    params = inspect.signature(getattr(F, name)).parameters
    for kw in KEYWORDS[name]:
        assert kw in params and params[kw].kind == inspect.Parameter.KEYWORD_ONLY, kw


@pytest.mark.parametrize("name", FILTERS)
def test_filters_exist(name):
    assert callable(getattr(F.filters, name))


def test_all_is_complete():
    for name in SIGNATURES:
        assert name in F.__all__, name


@pytest.mark.parametrize("module", ["fastconv.ops.conv", "fastconv._algorithms", "fastconv.spec.conv"])
def test_docstring_examples(module):
    mod = __import__(module, fromlist=["_"])
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_algorithms_for_pooling_and_windows():
    assert F.algorithms("avg_pool3d", (1, 2, 4, 4, 4), kernel_size=2) == ["direct"]
    assert F.algorithms("adaptive_max_pool2d", (1, 2, 9, 9), output_size=3) == ["direct"]
    assert F.algorithms("unfold") == ["direct"]
    with pytest.raises(ValueError, match=r"algorithms: unknown op 'conv4d'"):
        F.algorithms("conv4d", (1, 1, 1))
    with pytest.raises(ValueError, match=r"backend='tpu'"):
        F.algorithms("conv2d", (1, 1, 3, 3), (1, 1, 1, 1), backend="tpu")
