"""Workload suites -> benchmark problems, built from the library's own specs.

A *problem* is one layer of a suite: a fastconv call with fixed shapes and arguments.
It has a short canonical name that prints and parses (benchdnn style, the name of the
library's spec where there is one), FLOPs and minimum bytes moved taken from that spec,
and callables that run it on fastconv (per algorithm, NCHW or channels-last) and on
PyTorch (``torch.nn.functional``, NCHW or channels_last).

    >>> p = problem_from_layer({"op": "conv2d", "input": [1, 32, 56, 56],
    ...                         "weight": [32, 1, 3, 3], "padding": 1, "groups": 32})
    >>> p.name()
    'conv2d_mb1_g32ic32oc32_ih56iw56_kh3kw3_ph1w1'
    >>> parse(p.name()) == p
    True

Problems are layout-free: the layout ("nchw" or "nhwc") is chosen per run, and a
problem builds the spec of either with :meth:`Problem.spec_for`.

Kinds of problem and their names:

====================  ============================================================
conv / transposed     ``ConvSpec.name()``, e.g. ``conv2d_mb1_g1ic64oc64_ih56iw56_kh3kw3_ph1w1``
separable_conv2d      ``separable_conv2d_mb1_ic32oc64_ih112iw112_kh3kw3_ph1w1`` (``m<M>``
                      channel multiplier, ``s``/``d``/``p`` tokens as conv)
max/avg/lp pooling    ``PoolSpec.name()``, e.g. ``max_pool2d_mb1_c64_ih112iw112_kh3kw3_sh2w2_ph1w1``
adaptive pooling      ``AdaptivePoolSpec.name()``, e.g. ``adaptive_avg_pool2d_mb1_c512_ih14iw14_oh7ow7``
global pooling        ``global_avg_pool2d_mb1_c1280_ih7iw7``
spatial pyramid       ``spatial_pyramid_pool2d_mb1_c256_ih13iw13_l1.2.4`` (``avg`` if not max)
backward pass         ``backward_`` then the forward conv's name: grad input and grad weight
====================  ============================================================

Every name may end in ``_f64`` (or ``_f16``) for another dtype, as the specs do.

Modules: ``base`` (the ``Problem`` interface, layouts, ``Unsupported``), ``calls``
(arguments of the fastconv and PyTorch calls, algorithms from fastconv's dispatch),
``conv`` and ``pool`` (the kinds of problem), ``suites`` (workload JSON -> problems),
``names`` (canonical names -> problems).
"""

from .backward import ConvBackwardProblem, backward_of
from .base import LAYOUTS, Problem, Unsupported
from .conv import ConvProblem, SeparableProblem
from .names import parse
from .pool import AdaptivePoolProblem, GlobalPoolProblem, PoolProblem, PyramidPoolProblem
from .suites import load_suite, problem_from_layer, suite_about, suite_names

__all__ = [
    "LAYOUTS", "AdaptivePoolProblem", "ConvBackwardProblem", "ConvProblem", "GlobalPoolProblem", "PoolProblem",
    "Problem", "PyramidPoolProblem", "SeparableProblem", "Unsupported", "backward_of", "load_suite", "parse",
    "problem_from_layer", "suite_about", "suite_names",
]
