"""Canonical spec names: every spec prints a name its class parses back to the same spec.

``ConvSpec``, ``PoolSpec`` and ``AdaptivePoolSpec`` share one token reader and writer
(fastconv/spec/names.py). Checked over every layer of the benchmark workloads (both
layouts, three dtypes) and over specs drawn with a fixed seed (pads, ceil mode,
dilation, strides, pooling options, dtypes, layouts); malformed names raise ValueError
naming the string and the token at fault.
"""

from __future__ import annotations

import doctest
import math
import os
import random
from dataclasses import replace

import pytest

from bench.problems import load_suite, suite_names
from fastconv.spec import AdaptivePoolSpec, ConvSpec, PoolSpec, SeparablePair, WindowSpec, names
from fastconv.spec.conv import resolve_conv
from fastconv.spec.pool import resolve_adaptive_pool, resolve_pool

# drawn specs per kind; FASTCONV_NUM_CASES (24 by default) scales it for a deep run
DRAWS = 10 * int(os.environ.get("FASTCONV_NUM_CASES", "24"))


def round_trips(spec) -> None:
    text = spec.name()
    again = type(spec).parse(text)
    assert again == spec, (text, spec, again)
    assert hash(again) == hash(spec)
    assert again.name() == text and str(spec) == text
    assert " " not in text and text.isascii()


# ---------------------------------------------------------------------------------------
# Every layer of the workload suites (fastconv/testing/workloads/*.json)
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", suite_names())
def test_every_workload_layer_round_trips(suite):
    seen = 0
    for dtype in ("float32", "float64"):
        for _, problem in load_suite(suite, dtype):
            for spec in problem.specs:
                for channels_last in (False, True):
                    s = replace(spec, channels_last=channels_last)
                    round_trips(s)
                    round_trips(replace(s, dtype="float16"))
                    seen += 1
            if problem.kind == "separable":  # the pair is the row's spec: its name is the row name
                pair = SeparablePair(problem.spec, problem.pointwise)
                assert pair.name() == problem.name()
                for channels_last in (False, True):
                    round_trips(SeparablePair(*(replace(s, channels_last=channels_last) for s in pair)))
    assert seen


def test_workload_pooling_names_read_as_documented():
    specs = {layer: p.spec for layer, p in load_suite("pooling")}
    assert specs["resnet.max3s2"].name() == "max_pool2d_mb1_c64_ih112iw112_kh3kw3_sh2w2_ph1w1"
    assert specs["inception.avg3s1"].name() == "avg_pool2d_mb1_c192_ih28iw28_kh3kw3_sh1w1_ph1w1"
    assert specs["adaptive.avg7"].name() == "adaptive_avg_pool2d_mb1_c512_ih14iw14_oh7ow7"


# ---------------------------------------------------------------------------------------
# Drawn specs
# ---------------------------------------------------------------------------------------


def _input(r, nd, channels, channels_last):
    batch, size = r.randint(0, 3), tuple(r.randint(1, 12) for _ in range(nd))
    return (batch, *size, channels) if channels_last else (batch, channels, *size)


def _pads(r, nd, words=("same", "valid")):
    return r.choice([0, 1, *words, tuple((r.randint(0, 2), r.randint(0, 2)) for _ in range(nd))])


def _draw(make, seed, count):
    """``count`` specs from ``make(random)``, skipping draws whose arguments do not fit."""
    r, out = random.Random(seed), []
    while len(out) < count:
        try:
            out.append(make(r))
        except ValueError:
            continue
    return out


def _conv(r):
    nd, cl = r.choice([1, 2, 3]), r.random() < 0.4
    g = r.choice([1, 1, 2, 3])
    c, k = g * r.randint(1, 3), g * r.randint(1, 3)
    kernel = tuple(r.randint(1, 4) for _ in range(nd))
    kw = dict(stride=tuple(r.randint(1, 3) for _ in range(nd)), dilation=tuple(r.randint(1, 2) for _ in range(nd)),
              groups=g, has_bias=r.random() < 0.5, activation=r.choice([None, "relu", "relu6"]), channels_last=cl,
              dtype=r.choice(["float16", "float32", "float64"]))
    if r.random() < 0.3:
        kw["output_padding"] = tuple(r.randint(0, 1) for _ in range(nd))
        spec = resolve_conv(f"conv_transpose{nd}d", _input(r, nd, c, cl), (c, k // g, *kernel),
                            padding=_pads(r, nd), **kw)
        if any(e < 0 for _, e in spec.pads):
            raise ValueError("a negative crop: see test_transposed_negative_crop_is_not_read_back")
        return spec
    mode = r.choice(["zeros", "zeros", "constant", "reflect", "replicate", "circular", "symmetric"])
    value = r.choice([0.0, 1.5, -2.0, 1 / 3, math.inf]) if mode == "constant" else 0.0
    return resolve_conv(f"conv{nd}d", _input(r, nd, c, cl), (k, c // g, *kernel), padding=_pads(r, nd, ("same", "valid", "full")),
                        padding_mode=mode, padding_value=value, **kw)


def _pool(r):
    nd, cl, mode = r.choice([1, 2, 3]), r.random() < 0.4, r.choice(["max", "avg", "lp"])
    kw = dict(ceil_mode=r.random() < 0.4, return_indices=r.random() < 0.2, channels_last=cl,
              dtype=r.choice(["float16", "float32", "float64"]))
    if mode == "avg" or r.random() < 0.1:  # other modes may carry them too: the name must say so
        kw["count_include_pad"] = r.random() < 0.5
        kw["divisor_override"] = r.choice([None, None, 1, 3])
    if mode == "lp" or r.random() < 0.1:
        kw["norm_type"] = r.choice([1, 1.0, 2.0, 3.0, 2.5, 1 / 3, 1e-3, math.inf])
    stride = r.choice([None, r.randint(1, 3), tuple(r.randint(1, 3) for _ in range(nd))])
    return resolve_pool(f"{mode}_pool{nd}d", mode, nd, _input(r, nd, r.randint(1, 17), cl),
                        tuple(r.randint(1, 4) for _ in range(nd)), stride, _pads(r, nd),
                        tuple(r.randint(1, 2) for _ in range(nd)), **kw)


def _adaptive(r):
    nd, cl, mode = r.choice([1, 2, 3]), r.random() < 0.4, r.choice(["max", "avg"])
    out = r.choice([r.randint(1, 6), tuple(r.choice([None, r.randint(1, 6)]) for _ in range(nd))])
    return resolve_adaptive_pool(f"adaptive_{mode}_pool{nd}d", mode, nd, _input(r, nd, r.randint(1, 17), cl), out,
                                 return_indices=r.random() < 0.3, channels_last=cl,
                                 dtype=r.choice(["float16", "float32", "float64"]))


@pytest.mark.parametrize("make", [_conv, _pool, _adaptive], ids=["conv", "pool", "adaptive_pool"])
def test_drawn_specs_round_trip(make):
    specs = _draw(make, seed=0, count=DRAWS)
    for spec in specs:
        round_trips(spec)
    names_ = [s.name() for s in specs]
    if make is _pool:  # the draw reaches every optional token
        for token in ("_ceil", "_excludepad", "_div", "_norm", "_indices", "_nhwc", "_f16", "_f64", "_d", "_p",
                      ".", "_s"):
            assert any(token in n for n in names_), token


def test_window_and_separable_names_spell_their_options():
    fold = WindowSpec("fold", 2, 2, 3, (9, 8), (4, 3), (2, 3), (2, 2), (1, 2), ((1, 0), (1, 1)), dtype="float64")
    assert fold.name() == "fold2d_mb2_c3_ih9iw8_gh4gw3_kh2kw3_sh2w2_dh1w2_ph1.0w1_f64"
    unpool = WindowSpec("max_unpool3d", 3, 1, 2, (4, 4, 4), (2, 2, 2), (2, 2, 2), (2, 2, 2), (1, 1, 1),
                        ((0, 0),) * 3, return_indices=True)
    assert unpool.name() == "max_unpool3d_mb1_c2_id4ih4iw4_gd2gh2gw2_kd2kh2kw2_sd2h2w2_indices"
    dw = resolve_conv("conv2d", (1, 7, 7, 4), (8, 1, 3, 3), groups=4, stride=2, padding=1, padding_mode="constant",
                      padding_value=0.5, has_bias=True, channels_last=True, dtype="float16")
    pw = resolve_conv("conv2d", dw.output_shape, (6, 8, 1, 1), has_bias=True, activation="relu6",
                      channels_last=True, dtype="float16")
    pair = SeparablePair(dw, pw)
    assert pair.name() == ("separable_conv2d_mb1_ic4oc6_ih7iw7_kh3kw3_m2_sh2w2_ph1w1_pmconstant0.5_dwbias_bias_relu6"
                           "_nhwc_f16")
    for spec in (fold, unpool, pair):
        round_trips(spec)


def test_pool_names_spell_their_options():
    avg = resolve_pool("avg_pool2d", "avg", 2, (2, 8, 9, 9), 3, 2, ((1, 0), (1, 1)), ceil_mode=True,
                       count_include_pad=False, divisor_override=5, dtype="float64")
    assert avg.name() == "avg_pool2d_mb2_c8_ih9iw9_kh3kw3_sh2w2_ph1.0w1_ceil_excludepad_div5_f64"
    lp = resolve_pool("lp_pool1d", "lp", 1, (1, 4, 10), 2, norm_type=1 / 3, channels_last=False)
    assert lp.name() == "lp_pool1d_mb1_c4_iw10_kw2_norm0.3333333333333333"
    mx = resolve_pool("max_pool3d", "max", 3, (1, 6, 6, 6, 3), 2, dilation=(1, 2, 1), return_indices=True,
                      channels_last=True)
    assert mx.name() == "max_pool3d_mb1_c3_id6ih6iw6_kd2kh2kw2_dd1h2w1_indices_nhwc"
    ad = resolve_adaptive_pool("adaptive_max_pool1d", "max", 1, (3, 2, 20), 4, return_indices=True, dtype="float16")
    assert ad.name() == "adaptive_max_pool1d_mb3_c2_iw20_ow4_indices_f16"
    for spec in (avg, lp, mx, ad):
        round_trips(spec)


# ---------------------------------------------------------------------------------------
# Malformed names
# ---------------------------------------------------------------------------------------

BAD = [
    # WindowSpec, SeparablePair
    (WindowSpec, "unfold_mb1_c2_ih5iw5_gh4gw4_kh2kw2", r"does not start with unfold<N>d_"),
    (WindowSpec, "unfold2d_mb1_c2_ih5iw5_kh2kw2", r"lacks its g<sizes> token"),
    (SeparablePair, "separable_conv2d_mb1_ih5iw5_kh3kw3", r"lacks its ic<C>oc<K> token"),
    (SeparablePair, "separable_conv2d_mb1_ic2oc3_ih5iw5_kh3kw3_gelu", r"unknown token 'gelu'"),
    # PoolSpec
    (PoolSpec, "max_pool2d_mb1_c4_ih8iw8", r"lacks its k<sizes> token"),
    (PoolSpec, "max_pool2d_mb1_ih8iw8_kh2kw2", r"lacks its c<C> token"),
    (PoolSpec, "max_pool2d_mb1_c4_kh2kw2", r"lacks its i<sizes> token"),
    (PoolSpec, "max_pool2d_mb1_c4_ih8iw8_kh2kw2_zz", r"unknown token 'zz'"),
    (PoolSpec, "max_pool2d_mb1_c4_ih8iw8_kh2kw2_", r"unknown token ''"),
    (PoolSpec, "max_pool2d_mb1_c4_ih8iw8_kh2kw2_f32", r"unknown token 'f32'"),
    (PoolSpec, "max_pool2d_mb1_c4_ih8iw8_kh2kw2_oh4ow4", r"unknown token 'oh4ow4'"),
    (PoolSpec, "max_pool2d_mb1_c4_ih8iw8_kh2kw2_bias", r"unknown token 'bias'"),
    (PoolSpec, "max_pool2d_mb1_c4_ih8_kh2kw2", r"token 'ih8' should read ih<n>iw<n>"),
    (PoolSpec, "max_pool2d_mb1_c4_iw8ih8_kh2kw2", r"token 'iw8ih8' should read ih<n>iw<n>"),
    (PoolSpec, "max_pool2d_mb1_c4_ih8iw8x_kh2kw2", r"token 'ih8iw8x' should read"),
    (PoolSpec, "max_pool1d_mb1_c4_iw8_kw2_sw1x", r"token 'sw1x' should read sw<n>"),
    (PoolSpec, "max_pool2d_mb1_c4_ih8iw8_kh2kw2_ph1", r"token 'ph1' should read ph<begin>\[\.<end>\]w<begin>"),
    (PoolSpec, "max_pool2d_mb1_c4_ih8iw8_kh2kw2_ph1.w1", r"token 'ph1.w1' should read"),
    (PoolSpec, "max_pool2d_mb1_mb2_c4_ih8iw8_kh2kw2", r"token 'mb2' repeats the mb<N> token"),
    (PoolSpec, "max_pool2d_mb1_c4_ih8iw8_kh2kw2_ceil_ceil", r"token 'ceil' repeats"),
    (PoolSpec, "lp_pool2d_mb1_c4_ih8iw8_kh2kw2_normx", r"token 'normx' has an unreadable value"),
    (PoolSpec, "max_pool4d_mb1_c4_ih8iw8_kh2kw2", r"does not start with max_pool<N>d_"),
    (PoolSpec, "conv2d_mb1_g1ic4oc4_ih8iw8_kh3kw3", r"does not start with"),
    (PoolSpec, "sum_pool2d_mb1_c4_ih8iw8_kh2kw2", r"does not start with"),
    # AdaptivePoolSpec
    (AdaptivePoolSpec, "adaptive_avg_pool2d_mb1_c4_ih8iw8", r"lacks its o<sizes> token"),
    (AdaptivePoolSpec, "adaptive_avg_pool2d_mb1_c4_ih8iw8_oh2", r"token 'oh2' should read oh<n>ow<n>"),
    (AdaptivePoolSpec, "adaptive_avg_pool2d_mb1_c4_ih8iw8_oh2ow2_kh2kw2", r"unknown token 'kh2kw2'"),
    (AdaptivePoolSpec, "adaptive_avg_pool2d_mb1_c4_ih8iw8_oh2ow2_ceil", r"unknown token 'ceil'"),
    (AdaptivePoolSpec, "adaptive_lp_pool2d_mb1_c4_ih8iw8_oh2ow2", r"does not start with adaptive_max_pool<N>d_"),
    (AdaptivePoolSpec, "max_pool2d_mb1_c4_ih8iw8_kh2kw2", r"does not start with"),
    # ConvSpec reads with the same helpers
    (ConvSpec, "conv2d_mb1_g1ic4oc4_ih8iw8", r"lacks its k<sizes> token"),
    (ConvSpec, "conv2d_mb1_ih8iw8_kh3kw3", r"lacks its g<G>ic<C>oc<K> token"),
    (ConvSpec, "conv2d_mb1_g1ic4oc4_ih8iw8_kh3kw3_sh2", r"token 'sh2' should read sh<n>w<n>"),
    (ConvSpec, "conv2d_mb1_g1ic4oc4_ih8iw8_kh3kw3_oph1w1", r"unknown token 'oph1w1'"),
    (ConvSpec, "conv2d_mb1_g1ic4oc4_ih8iw8_kh3kw3_pmconstantx", r"token 'pmconstantx' has an unreadable value"),
    (ConvSpec, "conv2d_mb1_g1ic4oc4_ih8iw8_kh3kw3_bias_bias", r"token 'bias' repeats"),
    (ConvSpec, "conv2d_mb1_g1ic4oc4_ih8iw8_kh3kw3_c4", r"unknown token 'c4'"),
    (ConvSpec, "conv2d_mb1_g1ic4oc4_ih8iw8_kh3kw3_zz9", r"unknown token 'zz9'"),
    (ConvSpec, "max_pool2d_mb1_c4_ih8iw8_kh2kw2", r"does not start with conv<N>d_"),
]


@pytest.mark.parametrize("cls,text,message", BAD, ids=[t for _, t, _ in BAD])
def test_malformed_names_raise(cls, text, message):
    with pytest.raises(ValueError, match=message) as err:
        cls.parse(text)
    assert str(err.value).startswith(f"{cls.__name__}.parse: {text!r}")


@pytest.mark.parametrize("cls,text,message", [
    (PoolSpec, "max_pool2d_mb1_c4_ih2iw2_kh5kw5", r"max_pool2d: kernel extent 5 .* larger than the padded input 2"),
    (PoolSpec, "lp_pool2d_mb1_c4_ih8iw8_kh2kw2_norm-1", r"lp_pool2d: norm_type=-1.0 must be a positive number"),
    (AdaptivePoolSpec, "adaptive_avg_pool2d_mb1_c4_ih8iw8_oh0ow2", r"adaptive_avg_pool2d: output_size=.* must be >= 1"),
    (ConvSpec, "conv2d_mb1_g2ic3oc4_ih8iw8_kh3kw3", r"conv2d: input channels 3 are not divisible by groups=2"),
])
def test_names_of_impossible_calls_raise_as_the_call_would(cls, text, message):
    """A well-formed name of a call that cannot be made fails where the call would, naming the op."""
    with pytest.raises(ValueError, match=message):
        cls.parse(text)


# ---------------------------------------------------------------------------------------
# The shared tokens, and the documented examples
# ---------------------------------------------------------------------------------------


def test_shared_tokens_write_and_read_back():
    assert names.sizes("i", (5, 6, 7)) == "id5ih6iw7"
    assert names.steps("op", (1, 0)) == "oph1w0"
    assert names.pads(((1, 1), (0, 3))) == "ph1w0.3"
    assert names.pads(((0, -1),)) == "pw0.-1"
    assert names.layout_dtype(True, "float16") == ["nhwc", "f16"] and names.layout_dtype(False, "float32") == []
    f = names.read("t", "mb2_c3_id5ih6iw7_kd1kh2kw3_sd2h1w1_dd1h1w2_pd0h1.2w3_nhwc_f64", 3,
                   ("mb", "c", "in", "kernel", "stride", "dilation", "pads", "nhwc", "dtype"))
    assert f == {"mb": 2, "c": 3, "in": (5, 6, 7), "kernel": (1, 2, 3), "stride": (2, 1, 1), "dilation": (1, 1, 2),
                 "pads": ((0, 0), (1, 2), (3, 3)), "nhwc": True, "dtype": "float64"}
    with pytest.raises(ValueError, match=r"^t: unknown token 'kd1kh2kw3'$"):
        names.read("t", "kd1kh2kw3", 3, ("in",))
    with pytest.raises(ValueError, match=r"^t lacks its l<levels> token$"):
        names.require("t", {}, "levels", forms={"levels": "l<levels>"})


@pytest.mark.parametrize("module", ["fastconv.spec.names", "fastconv.spec.pool", "fastconv.spec.window",
                                    "fastconv.spec.separable", "fastconv.testing.workloads", "bench.problems"])
def test_docstring_examples(module):
    mod = __import__(module, fromlist=["_"])
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted and result.failed == 0


# ---------------------------------------------------------------------------------------
# Known gaps in ConvSpec (not in its names): kept visible until fixed
# ---------------------------------------------------------------------------------------


def test_transposed_same_extension_is_output_padding_and_reads_back():
    spec = resolve_conv("conv_transpose1d", (1, 2, 5), (2, 2, 1), stride=3, padding="same")
    assert spec.pads == ((0, 0),) and spec.output_padding == (2,) and spec.out_size == (15,)
    round_trips(spec)


def test_padding_value_of_a_non_constant_mode_is_dropped():
    round_trips(resolve_conv("conv1d", (1, 2, 5), (2, 2, 3), padding=1, padding_mode="reflect", padding_value=1.5))
