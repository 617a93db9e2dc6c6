"""conv_output_shape, conv_flops, conv_params and receptive_field."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from fastconv import conv_flops, conv_output_shape, conv_params, receptive_field
from fastconv.spec import resolve_conv, resolve_pool
from fastconv.testing import workloads


def workload_layer(suite, name):
    layers = workloads.layers(suite)
    return next(layer for layer in layers if layer["name"] == name)


def layer_args(layer):
    args = {k: layer[k] for k in ("stride", "padding", "dilation", "groups", "output_padding") if k in layer}
    if isinstance(args.get("padding"), list):
        args["padding"] = tuple(tuple(p) for p in args["padding"])
    return args


# ---- output shapes against torch -----------------------------------------------------

CONV_CASES = [  # (input, weight, kwargs)
    ((2, 3, 17), (4, 3, 3), dict(stride=2, padding=1)),
    ((1, 4, 9), (6, 2, 2), dict(dilation=3, groups=2)),
    ((1, 3, 15, 16), (8, 3, 3, 5), dict(stride=(2, 3), padding=(1, 2), dilation=(2, 1))),
    ((2, 6, 7, 7), (6, 1, 3, 3), dict(padding="same", groups=6)),
    ((1, 4, 8, 9), (2, 4, 2, 2), dict(padding="valid")),
    ((1, 2, 5, 6, 7), (3, 2, 3, 1, 2), dict(stride=(1, 2, 3), padding=(1, 0, 2))),
    ((0, 3, 11, 11), (5, 3, 3, 3), dict(stride=2)),
    ((3, 12), (5, 3, 3), dict(padding="same", dilation=2)),  # unbatched
    ((3, 10, 12), (5, 3, 3, 2), dict(stride=2)),  # unbatched
]


@pytest.mark.parametrize("ishape,wshape,kw", CONV_CASES)
def test_conv_output_shape_matches_torch(ishape, wshape, kw):
    nd = len(wshape) - 2
    conv = {1: TF.conv1d, 2: TF.conv2d, 3: TF.conv3d}[nd]
    expected = tuple(conv(torch.zeros(ishape), torch.zeros(wshape), **kw).shape)
    assert conv_output_shape(ishape, wshape, **kw) == expected


TRANSPOSED_CASES = [  # (input, weight, kwargs)
    ((2, 4, 7), (4, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ((1, 4, 5, 6), (4, 2, 4, 4), dict(stride=2, padding=1, groups=2)),
    ((1, 2, 5, 6), (2, 3, 3, 2), dict(stride=(3, 2), padding=(1, 0), dilation=(2, 1), output_padding=(1, 0))),
    ((1, 3, 3, 4, 5), (3, 2, 2, 3, 3), dict(stride=2, padding=(0, 1, 1))),
    ((3, 4, 4), (3, 5, 2, 2), dict(stride=2)),  # unbatched
]


@pytest.mark.parametrize("ishape,wshape,kw", TRANSPOSED_CASES)
def test_conv_transpose_output_shape_matches_torch(ishape, wshape, kw):
    nd = len(wshape) - 2
    conv = {1: TF.conv_transpose1d, 2: TF.conv_transpose2d, 3: TF.conv_transpose3d}[nd]
    expected = tuple(conv(torch.zeros(ishape), torch.zeros(wshape), **kw).shape)
    assert conv_output_shape(ishape, wshape, transposed=True, **kw) == expected


def test_conv_output_shape_padding_forms_and_layouts():
    # "same" for any stride: ceil(in / stride), ONNX SAME_UPPER
    assert conv_output_shape((1, 3, 15, 16), (8, 3, 3, 3), stride=2, padding="same") == (1, 8, 8, 8)
    assert conv_output_shape((1, 3, 10), (8, 3, 3), padding="full", dilation=2) == (1, 8, 14)
    assert conv_output_shape((1, 3, 10, 10), (8, 3, 3, 3), padding=((2, 0), (0, 1))) == (1, 8, 10, 9)
    assert conv_output_shape((2, 15, 16, 3), (8, 3, 3, 3), stride=2, channels_last=True) == (2, 7, 7, 8)
    assert conv_output_shape((1, 4, 7, 7), (4, 2, 3, 3), stride=2, padding=1, transposed=True,
                             output_size=(14, 14)) == (1, 2, 14, 14)
    assert conv_output_shape(np.zeros((1, 3, 8, 8)), np.zeros((2, 3, 3, 3))) == (1, 2, 6, 6)
    assert conv_output_shape(torch.Size([1, 3, 8]), torch.Size([2, 3, 3])) == (1, 2, 6)


@pytest.mark.parametrize("suite", workloads.suite_names())
def test_workload_shapes_match_torch(suite):
    for layer in workloads.layers(suite):
        op = layer["op"]
        if not op.startswith("conv"):
            continue
        args = layer_args(layer)
        transposed = op.startswith("conv_transpose")
        fn = getattr(TF, op)
        targs = dict(args)
        if isinstance(targs.get("padding"), tuple):  # torch takes symmetric pads only
            pads = targs.pop("padding")
            meta = torch.zeros(layer["input"], device="meta")
            x = TF.pad(meta, [v for pair in reversed(pads) for v in pair])
        else:
            x = torch.zeros(layer["input"], device="meta")
        expected = tuple(fn(x, torch.zeros(layer["weight"], device="meta"), **targs).shape)
        got = conv_output_shape(layer["input"], layer["weight"], transposed=transposed, **args)
        assert got == expected, layer["name"]


# ---- FLOPs -------------------------------------------------------------------------

# Hand-computed: FLOPs = 2 * N * K * prod(out) * C/groups * prod(kernel) (+ N*K*prod(out) bias)
HAND_FLOPS = [
    # resnet50 conv1: 64 x 112 x 112 outputs, 3 * 7 * 7 = 147 taps each
    ("resnet50", "conv1", 2 * 64 * 112 * 112 * 147, 64 * 112 * 112),
    # resnet50 l2.3x3s2: 128 x 28 x 28 outputs, 128 * 9 taps each
    ("resnet50", "l2.3x3s2", 2 * 128 * 28 * 28 * 1152, 128 * 28 * 28),
    # mobilenet_v2 b1.dws2: depthwise, 96 x 56 x 56 outputs, 9 taps each
    ("mobilenet_v2", "b1.dws2", 2 * 96 * 56 * 56 * 9, 96 * 56 * 56),
    # causal TCN, dilation 8, left pad 16: 64 x 16000 outputs, 64 * 3 taps each
    ("sequence_1d", "tcn.d8", 2 * 64 * 16000 * 192, 64 * 16000),
    # raw audio front end, kernel 80 stride 4: 32 x 3981 outputs, 80 taps each
    ("sequence_1d", "audio.k80s4", 2 * 32 * 3981 * 80, 32 * 3981),
    # C3D conv1: 64 x 16 x 112 x 112 outputs, 3 * 27 taps each
    ("video_3d", "c3d.conv1", 2 * 64 * 16 * 112 * 112 * 81, 64 * 16 * 112 * 112),
    # DCGAN up1 (transposed): each of 16 * 512 * 4 * 4 inputs meets 256 * 16 weights;
    # output 16 x 256 x 8 x 8
    ("transposed", "dcgan.up1", 2 * 16 * 512 * 16 * 256 * 16, 16 * 256 * 8 * 8),
]


@pytest.mark.parametrize("suite,name,flops,outputs", HAND_FLOPS)
def test_flops_of_real_layers(suite, name, flops, outputs):
    layer = workload_layer(suite, name)
    transposed = layer["op"].startswith("conv_transpose")
    args = layer_args(layer)
    assert conv_flops(layer["input"], layer["weight"], transposed=transposed, **args) == flops
    assert conv_flops(layer["input"], layer["weight"], transposed=transposed, bias=True, **args) == flops + outputs


def test_flops_come_from_the_spec():
    spec = resolve_conv("conv2d", (2, 8, 10, 12), (6, 4, 3, 3), stride=2, padding="same", groups=2,
                        has_bias=True)
    assert conv_flops((2, 8, 10, 12), (6, 4, 3, 3), 2, "same", groups=2, bias=True) == spec.flops
    assert spec.flops == 2 * 2 * 6 * 5 * 6 * 4 * 9 + 2 * 6 * 5 * 6
    # unbatched counts one image
    assert conv_flops((8, 10, 12), (6, 8, 3, 3)) == conv_flops((1, 8, 10, 12), (6, 8, 3, 3))
    assert conv_flops((0, 8, 10, 12), (6, 8, 3, 3)) == 0


def test_conv_params():
    assert conv_params((64, 3, 7, 7), bias=False) == 9408
    assert conv_params((64, 3, 7, 7)) == 9408 + 64
    assert conv_params((32, 1, 3, 3), groups=32) == 288 + 32  # depthwise
    assert conv_params((64, 3, 5)) == 960 + 64  # conv1d
    assert conv_params((512, 256, 4, 4), transposed=True) == 512 * 256 * 16 + 256
    assert conv_params((8, 3, 2, 2), transposed=True, groups=2) == 8 * 3 * 4 + 6
    assert conv_params((4, 2, 1, 3, 3), bias=False) == 72
    layer = workload_layer("mobilenet_v2", "conv_last")
    assert conv_params(layer["weight"]) == 1280 * 320 + 1280


def test_arithmetic_errors():
    with pytest.raises(ValueError, match=r"conv2d: input has 4 channels but weight expects 3"):
        conv_output_shape((1, 4, 8, 8), (2, 3, 3, 3))
    with pytest.raises(ValueError, match="kernel extent 9"):
        conv_output_shape((1, 3, 8, 8), (2, 3, 9, 9))
    with pytest.raises(TypeError, match="conv_output_shape: input_shape must be a sequence of ints"):
        conv_output_shape(5, (2, 3, 3, 3))
    with pytest.raises(TypeError, match=r"conv_flops: weight_shape=\(2, 3.0, 3, 3\) must hold ints"):
        conv_flops((1, 3, 8, 8), (2, 3.0, 3, 3))
    with pytest.raises(ValueError, match="weight_shape=.*must have 3, 4 or 5 dims"):
        conv_output_shape((1, 3, 8, 8), (2, 3))
    with pytest.raises(ValueError, match="input must have 4 dims"):
        conv_output_shape((1, 1, 3, 8, 8), (2, 3, 3, 3))
    with pytest.raises(ValueError, match="output_padding and output_size need transposed=True"):
        conv_output_shape((1, 3, 8, 8), (2, 3, 3, 3), output_padding=1)
    with pytest.raises(ValueError, match="output_padding=2 in spatial dim 0 must be smaller"):
        conv_output_shape((1, 3, 8, 8), (3, 2, 3, 3), stride=2, output_padding=2, transposed=True)
    with pytest.raises(ValueError, match="conv2d: groups=0"):
        conv_flops((1, 3, 8, 8), (2, 3, 3, 3), groups=0)
    with pytest.raises(ValueError, match="conv_params: groups=0"):
        conv_params((2, 3, 3, 3), groups=0)
    with pytest.raises(ValueError, match="must not hold negative"):
        conv_params((2, -3, 3, 3))


# ---- receptive field ---------------------------------------------------------------

def test_receptive_field_by_hand():
    assert receptive_field([(3, 1, 1)] * 2) == {"size": (5,), "jump": (1,), "start": (0,), "center": (2.0,)}
    # ResNet stem: conv 7x7/2 pad 3, max pool 3x3/2 pad 1
    rf = receptive_field([dict(kernel_size=7, stride=2, padding=3),
                          dict(kernel_size=3, stride=2, padding=1)], nd=2)
    assert rf == {"size": (11, 11), "jump": (4, 4), "start": (-5, -5), "center": (0.0, 0.0)}
    # WaveNet/TCN: kernel 2, dilations 1..512 -> 1024 samples
    tcn = receptive_field([(2, 1, 2 ** i) for i in range(10)])
    assert tcn["size"] == (1024,) and tcn["jump"] == (1,)
    # the causal TCN of the workloads: kernel 3, dilations 1..256, left pads 2d
    layers = [l for l in workloads.layers("sequence_1d")
              if l["name"].startswith("tcn.")]
    rf = receptive_field([dict(kernel_size=l["weight"][2], dilation=l["dilation"],
                               padding=tuple(tuple(p) for p in l["padding"])) for l in layers])
    assert rf["size"] == (1 + 2 * 511,) and rf["start"] == (-(2 * 511),)  # sees only the past
    # per-dim values, a stride of None (pooling: the kernel), an even kernel
    rf = receptive_field([((3, 1), (2, 1), 1), {"kernel": 2, "stride": None}])
    assert rf == {"size": (5, 2), "jump": (4, 2), "start": (0, 0), "center": (2.0, 0.5)}
    # "same" with stride 1 and "full"
    assert receptive_field([(3, 1, 2, "same")])["start"] == (-2,)
    assert receptive_field([(3, 1, 1, "full"), (3, 1, 1, "valid")])["start"] == (-2,)


def test_receptive_field_of_specs():
    specs = [resolve_conv("conv2d", (1, 3, 32, 32), (8, 3, 5, 3), stride=2, padding=(2, 1)),
             resolve_pool("max_pool2d", "max", 2, (1, 8, 16, 16), 2)]
    assert receptive_field(specs) == receptive_field([((5, 3), 2, 1, (2, 1)), (2, 2, 1, 0)])


@pytest.mark.parametrize("layers", [
    [(3, 2, 1, 1), (3, 1, 2, 2), (2, 2, 1, 0), (3, 1, 3, 1)],
    [((5, 3), (1, 2), (1, 2), ((2, 0), (1, 1))), ((3, 2), (3, 1), (2, 1), 0)],
    [((2, 3), (2, 2), 1, 0), ((3, 3), (2, 1), (1, 3), (1, 3)), ((1, 2), 1, 1, 0)],
])
def test_receptive_field_matches_autograd(layers):
    """The input gradient of one output element is nonzero exactly over its receptive field."""
    rf = receptive_field(layers)
    nd = len(rf["size"])
    x = torch.zeros((1, 1) + (64,) * nd, dtype=torch.float64, requires_grad=True)
    y = x
    for kernel, stride, dilation, padding in layers:
        k = (kernel,) * nd if isinstance(kernel, int) else kernel
        pads = [((p, p) if isinstance(p, int) else p) for p in
                ((padding,) * nd if isinstance(padding, int) else padding)]
        y = TF.pad(y, [v for pair in reversed(pads) for v in pair])
        conv = TF.conv1d if nd == 1 else TF.conv2d
        y = conv(y, torch.ones((1, 1) + k, dtype=torch.float64), stride=stride, dilation=dilation)
    index = (3,) * nd  # an output whose field lies inside the input
    y[(0, 0) + index].backward()
    support = np.nonzero(x.grad[0, 0].numpy())
    for a in range(nd):
        first = rf["start"][a] + index[a] * rf["jump"][a]
        assert first >= 0 and first + rf["size"][a] <= 64
        assert support[a].min() == first
        assert support[a].max() == first + rf["size"][a] - 1


def test_receptive_field_errors():
    with pytest.raises(TypeError, match="receptive_field: layers must be a sequence"):
        receptive_field(3)
    with pytest.raises(ValueError, match=r"layers\[0\].*no 'kernel_size'"):
        receptive_field([dict(stride=2)])
    with pytest.raises(ValueError, match=r"layers\[1\] has unknown keys \['strides'\]"):
        receptive_field([(3, 1, 1), dict(kernel_size=3, strides=2)])
    with pytest.raises(ValueError, match=r"layers\[0\]: stride=0"):
        receptive_field([(3, 0, 1)])
    with pytest.raises(ValueError, match="mix tuples of lengths"):
        receptive_field([((3, 3), 1, 1), ((3, 3, 3), 1, 1)])
    with pytest.raises(ValueError, match="padding='same' with stride"):
        receptive_field([(3, 2, 1, "same")])
    with pytest.raises(TypeError, match=r"layers\[0\]=.*must be a \(kernel, stride, dilation"):
        receptive_field(["conv"])
    with pytest.raises(ValueError, match="transposed"):
        receptive_field([resolve_conv("conv_transpose1d", (1, 2, 5), (2, 2, 3))])


def test_import_stays_light():
    code = ("import sys, time; t = time.perf_counter(); import fastconv, fastconv.arithmetic, "
            "fastconv.filters; dt = time.perf_counter() - t; "
            "assert 'numba' not in sys.modules, 'numba imported'; print(dt)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) < 1.0  # contract 0.5 s; slack for a loaded 2-core machine
    assert math.isfinite(float(out.stdout))
