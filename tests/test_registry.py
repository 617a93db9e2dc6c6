"""The sample registry (fastconv.testing) and the data it ships."""

from __future__ import annotations

import doctest
import json
import re
import sys
from importlib import resources

import numpy as np
import pytest

import fastconv as F
from fastconv.spec import ConvSpec, SeparablePair
from fastconv.testing import registry, tolerances, workloads
from fastconv.testing.conv_samples import workload_layers
from fastconv.testing.op_sample import OpSample


def test_workloads_are_package_data_read_through_importlib_resources():
    folder = resources.files("fastconv.testing.workloads")
    files = sorted(f.name for f in folder.iterdir() if f.name.endswith(".json"))
    assert len(files) >= 9 and "resnet50.json" in files
    assert workloads.suite_names() == [f[: -len(".json")] for f in files]
    for suite in workloads.suite_names():
        doc = json.loads(folder.joinpath(f"{suite}.json").read_text())
        assert doc["layers"] and workloads.layers(suite) == doc["layers"]
        assert workloads.about(suite) == doc.get("about", "")


def test_docstring_examples():
    result = doctest.testmod(registry, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted and result.failed == 0


def test_workload_layers_are_fresh_copies():
    workloads.layers("pooling")[0]["op"] = "changed"
    assert workloads.layers("pooling")[0]["op"] != "changed"


def test_unknown_suite_names_the_suites():
    with pytest.raises(ValueError, match=r"unknown suite 'nope'; the suites are: .*resnet50"):
        workloads.layers("nope")


# ---- the op registry ---------------------------------------------------------------------

PUBLIC_OPS = sorted(set(F.__all__) - {"filters", "AdaptivePoolSpec", "ConvSpec", "PoolSpec", "algorithms",
                                      "clear_caches", "set_workspace_limit", "workspace_limit"}
                    - set(F.arithmetic.__all__))


def _kind(op: str) -> str:
    """An op's name without its spatial rank and pooling mode: ops of one kind share their kernels."""
    return re.sub(r"max|avg|lp", "*", re.sub(r"[123]d$", "", op))


def test_every_public_op_is_registered_and_every_kind_has_an_every_op_sample():
    assert {o.name for o in registry.ops()} == set(PUBLIC_OPS)
    covered = {_kind(s.op) for s in registry.samples(tags={"every_op"})}
    for info in registry.ops():
        assert _kind(info.name) in covered, info.name
        assert info.reference is not None, info.name


def test_selection_is_by_tag_and_family():
    conv = registry.samples(family="conv")
    assert conv and all(registry.op_info(s.op).family == "conv" for s in conv)
    assert registry.samples(family="conv", tags={"curated"}) == [s for s in conv if "curated" in s.tags]
    layout = registry.samples(family="conv", tags={"channels_last"})
    assert layout and all("channels_last" in s.tags and "curated" in s.tags for s in layout)
    assert not registry.samples(family="conv", tags={"dilated"}, exclude={"dilated"})
    for s in registry.samples(family="conv", exclude={"every_op"}):  # the implied tags say what the spec says
        spec = s.spec()
        assert ("dilated" in s.tags) == any(d > 1 for d in spec.dilation), str(s)
        assert ("transposed" in s.tags) == spec.transposed and (s.dtype in s.tags), str(s)
        if not spec.transposed:
            assert ("depthwise" in s.tags) == spec.is_depthwise and ("pointwise" in s.tags) == spec.is_pointwise


def test_error_inputs_belong_to_registered_ops_and_have_unique_names():
    errors = registry.error_inputs()
    assert len(errors) >= 110
    assert {e.op for e in errors} <= {o.name for o in registry.ops()}
    for family in ("conv", "pool", "window"):
        names = [str(e) for e in registry.error_inputs(family=family)]
        assert len(names) == len(set(names)), family
    for e in errors:
        assert e.error in (ValueError, TypeError) and e.match


def test_register_op_refuses_a_second_entry_for_an_op():
    with pytest.raises(ValueError, match=r"register_op: 'conv2d' is registered already \(family 'conv'\)"):
        registry.register_op(registry.OpInfo("conv2d", "conv"))
    with pytest.raises(KeyError, match="no op 'conv9d' is registered"):
        registry.op_info("conv9d")


def test_tolerances_default_to_the_family_and_take_overrides():
    assert registry.op_info("conv2d").tolerance("float32") == tolerances.tolerance("conv", np.float32)
    assert registry.op_info("lp_pool2d").tolerance("float32") == tolerances.tolerance("pool_lp", "float32")
    assert registry.op_info("max_pool2d").tolerance(np.float64) == tolerances.DEFAULT["float64"]


# ---- every sample's spec reads back from its name ------------------------------------------

class _Resolved(Exception):
    """Raised where a call's spec reaches the dispatch table: the kernel never runs."""

    def __init__(self, spec):
        self.spec = spec


def _stop_at_the_table(monkeypatch):
    """Make every fastconv module's ``choose`` raise _Resolved with the spec it is given."""
    from fastconv import dispatch

    real = dispatch.choose

    def spy(family, backend, spec, algo="auto"):
        raise _Resolved(spec)

    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("fastconv") and getattr(module, "choose", None) is real:
            monkeypatch.setattr(module, "choose", spy)


def _arguments(s) -> list:
    """Zero arrays for sample ``s``; max_unpool's come from a max pooling, as OpSample.call makes them."""
    arrays = [np.zeros(shape, s.dtype) for shape in s.shapes]
    if s.op.startswith("max_unpool"):
        a = s.args
        pool = getattr(F, f"max_pool{s.op[-2]}d")
        return list(pool(arrays[0], a["kernel_size"], a.get("stride"), a.get("padding", 0), return_indices=True))
    return arrays


def test_every_op_sample_spec_parses_back(monkeypatch):
    """The spec each OpSample's call resolves (caught where it reaches the dispatch table,
    before any kernel runs) reads back from its name."""
    calls = [(s, _arguments(s)) for s in registry.samples() if isinstance(s, OpSample)]
    assert len(calls) > 100
    _stop_at_the_table(monkeypatch)
    for s, arrays in calls:
        F.clear_caches()  # a remembered call plan would skip the table
        with pytest.raises(_Resolved) as caught:
            getattr(F, s.op)(*arrays, **s.args) if s.op.startswith("max_unpool") else s.call(F, arrays)
        spec = caught.value.spec
        assert type(spec).parse(str(spec)) == spec, f"{s}: {spec}"


def test_every_conv_sample_spec_parses_back():
    conv = registry.samples(family="conv", exclude={"every_op"}) + [
        s for suite in workloads.suite_names() for s in workload_layers(suite)]
    assert len(conv) > 100
    for s in conv:
        for channels_last in (False, True):
            spec = s.spec(channels_last)
            assert ConvSpec.parse(str(spec)) == spec, str(spec)


def test_every_benchmark_problem_spec_parses_back():
    from bench.problems import SeparableProblem, load_suite

    seen = 0
    for suite in workloads.suite_names():
        for _, problem in load_suite(suite):
            specs = [SeparablePair(problem.spec, problem.pointwise)] if isinstance(problem, SeparableProblem) \
                else list(problem.specs)
            for spec in specs:
                assert type(spec).parse(str(spec)) == spec, str(spec)
                seen += 1
    assert seen > 100
