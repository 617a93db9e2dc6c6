"""Fast tests of the benchmark harness (bench/): names, arithmetic, statistics, reports.

No test here depends on how fast anything runs: timing is driven by a fake clock.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

# bench/ is a directory of the repository, not an installed package: make it importable
# however pytest was started (``pytest`` does not put the working directory on sys.path).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import environment_plan, prepare_environment  # noqa: E402
from bench.problems import (  # noqa: E402
    ConvProblem,
    SeparableProblem,
    load_suite,
    parse,
    problem_from_layer,
    suite_names,
)
from bench.timing import Budget, Candidate, first_call, measure, reps_for, summarize  # noqa: E402

SUITES = suite_names()


# ---------------------------------------------------------------------------------------
# Problems: canonical names and arithmetic
# ---------------------------------------------------------------------------------------


def test_every_suite_is_found():
    assert {"dw_vs_standard", "mobilenet_v2", "resnet50", "pooling"} <= set(SUITES)


@pytest.mark.parametrize("suite", SUITES)
def test_every_layer_round_trips_through_its_name(suite):
    keys = set()
    for layer, problem in load_suite(suite):
        name = problem.name()
        again = parse(name)
        assert again == problem, (suite, layer, name)
        assert again.name() == name
        assert again.flops == problem.flops and again.min_bytes == problem.min_bytes
        assert " " not in name and name.isascii()
        keys.add((layer, name))
    assert len(keys) == len(load_suite(suite)), "(layer, problem) must identify a row within a suite"


def _layer(suite, name):
    """The first layer of that name (dw_vs_standard repeats names at batch 8)."""
    return next(p for layer, p in load_suite(suite) if layer == name)


# FLOPs and minimum bytes worked out by hand (float32: 4 bytes an element).
HAND = [
    # 3x3, 64 -> 64 at 56x56: 2 * K * C * 9 * H * W; input + output + weight
    ("dw_vs_standard", "std.c64.56", 2 * 64 * 64 * 9 * 56 * 56, (64 * 56 * 56 * 2 + 64 * 64 * 9) * 4),
    # depthwise: one channel in per channel out
    ("dw_vs_standard", "dw.c64.56", 2 * 64 * 9 * 56 * 56, (64 * 56 * 56 * 2 + 64 * 9) * 4),
    ("dw_vs_standard", "pw.c64.56", 2 * 64 * 64 * 56 * 56, (64 * 56 * 56 * 2 + 64 * 64) * 4),
    # separable: dw + pw FLOPs; bytes: input, both weights, output (the middle map is not counted)
    ("dw_vs_standard", "sep.c64.56", 2 * 64 * 9 * 56 * 56 + 2 * 64 * 64 * 56 * 56,
     (64 * 56 * 56 * 2 + 64 * 9 + 64 * 64) * 4),
    # 7x7 stride 2 on RGB: output 112x112
    ("resnet50", "conv1", 2 * 64 * 3 * 49 * 112 * 112, (3 * 224 * 224 + 64 * 112 * 112 + 64 * 3 * 49) * 4),
    # transposed: every input pixel meets every tap: 2 * N * C * H * W * K * taps
    ("transposed", "dcgan.up1", 2 * 16 * 512 * 4 * 4 * 256 * 16,
     (16 * 512 * 4 * 4 + 16 * 256 * 8 * 8 + 512 * 256 * 16) * 4),
    # causal 1-D conv: output length equals input length
    ("sequence_1d", "tcn.d1", 2 * 64 * 64 * 3 * 16000, (64 * 16000 * 2 + 64 * 64 * 3) * 4),
    # max pool 3x3 s2 p1 on 112 -> 56: one compare a tap
    ("pooling", "resnet.max3s2", 64 * 56 * 56 * 9, (64 * 112 * 112 + 64 * 56 * 56) * 4),
    # global average: one add an input element
    ("pooling", "global.avg", 32 * 2048 * 49, (32 * 2048 * 49 + 32 * 2048) * 4),
    # pyramid 1, 2, 4 on 13x13: windows of 13; 7+7; 4+4+4+4 cells a side -> 169 + 196 + 256 taps
    ("pooling", "spp.max", 256 * (13 * 13 + 14 * 14 + 16 * 16), (256 * 13 * 13 + 256 * (1 + 4 + 16)) * 4),
]


@pytest.mark.parametrize("suite,layer,flops,nbytes", HAND, ids=[f"{s}:{n}" for s, n, *_ in HAND])
def test_flops_and_bytes_by_hand(suite, layer, flops, nbytes):
    p = _layer(suite, layer)
    assert p.flops == flops
    assert p.min_bytes == nbytes
    assert p.intensity == pytest.approx(flops / nbytes)


def test_names_read_as_documented():
    assert _layer("dw_vs_standard", "dw.c64.56").name() == "conv2d_mb1_g64ic64oc64_ih56iw56_kh3kw3_ph1w1"
    assert _layer("dw_vs_standard", "sep.c64.56").name() == \
        "separable_conv2d_mb1_ic64oc64_ih56iw56_kh3kw3_ph1w1"
    assert _layer("sequence_1d", "tcn.d2").name() == "conv1d_mb1_g1ic64oc64_iw16000_kw3_dw2_pw4.0"
    assert _layer("pooling", "spp.max").name() == "spatial_pyramid_pool2d_mb1_c256_ih13iw13_l1.2.4"
    assert _layer("mobilenet_v2", "avgpool").name() == "global_avg_pool2d_mb1_c1280_ih7iw7"


def test_separable_name_keeps_multiplier_stride_and_dtype():
    p = problem_from_layer({"op": "separable_conv2d", "input": [2, 8, 15, 15], "depthwise_weight": [16, 1, 5, 5],
                            "pointwise_weight": [24, 16], "stride": 2, "padding": 2}, dtype="float64")
    assert isinstance(p, SeparableProblem)
    assert p.name() == "separable_conv2d_mb2_ic8oc24_ih15iw15_kh5kw5_m2_sh2w2_ph2w2_f64"
    assert parse(p.name()) == p
    assert p.pointwise.in_channels == 16 and p.pointwise.in_size == (8, 8)


def test_dtype_is_part_of_the_name():
    p = problem_from_layer({"op": "conv2d", "input": [1, 4, 8, 8], "weight": [4, 4, 3, 3]}, dtype="float64")
    assert p.name().endswith("_f64")
    assert parse(p.name()).dtype == "float64"
    assert p.min_bytes == (4 * 64 + 4 * 36 + 4 * 36) * 8


@pytest.mark.parametrize("text", ["conv2d_mb1", "conv2d_mb1_g1ic4oc4_ih8iw8_kh3kw3_zz9", "pool_thing",
                                  "separable_conv2d_mb1_ic4_ih8iw8_kh3kw3", "max_pool2d_mb1_c4_ih8iw8"])
def test_bad_names_raise(text):
    with pytest.raises(ValueError):
        parse(text)


def test_layouts_give_channels_last_specs_and_arrays():
    p = parse("conv2d_mb2_g1ic3oc5_ih6iw7_kh3kw3_ph1w1")
    assert p.spec_for("nhwc").input_shape == (2, 6, 7, 3)
    arrays = p.make_arrays(np.random.default_rng(0))
    x_cl, w = p.in_layout(arrays, "nhwc")
    assert x_cl.shape == (2, 6, 7, 3) and x_cl.flags.c_contiguous
    np.testing.assert_array_equal(np.moveaxis(x_cl, -1, 1), arrays[0])
    assert w is arrays[1]


# ---------------------------------------------------------------------------------------
# Timing, on a fake clock
# ---------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.t = 0.0
        self.calls = []

    def __call__(self):
        return self.t

    def op(self, key, seconds, fail_at=None):
        count = {"n": 0}

        def fn(i):
            count["n"] += 1
            if fail_at is not None and count["n"] >= fail_at:
                raise RuntimeError("boom")
            self.calls.append((key, i))
            self.t += seconds(count["n"]) if callable(seconds) else seconds
        return fn


def test_summarize_median_and_iqr():
    s = summarize([0.004, 0.001, 0.1, 0.003, 0.002])
    assert s["n"] == 5
    assert s["median_s"] == pytest.approx(0.003)
    assert s["q1_s"] == pytest.approx(0.002) and s["q3_s"] == pytest.approx(0.004)
    assert s["iqr_s"] == pytest.approx(0.002)
    assert s["mean_s"] == pytest.approx(0.022)
    assert s["min_s"] == 0.001 and s["max_s"] == 0.1
    assert summarize([]) == {"n": 0}


def test_reps_follow_the_budget_and_clamp():
    b = Budget(warmup_s=0.01, measure_s=0.1, min_reps=3, max_reps=50, rounds=5)
    assert reps_for(0.001, b) == 50  # 100 would fit: clamped to max_reps
    assert reps_for(0.02, b) == 5
    assert reps_for(0.1, b) == 3  # 1 would fit: min_reps wins
    assert reps_for(0.0, b) == 50


def test_measure_budgets_interleaving_and_statistics():
    clock = FakeClock()
    # budgets chosen so float rounding of the fake times cannot change a count
    b = Budget(warmup_s=0.0095, measure_s=0.099, min_reps=3, max_reps=50, rounds=5)
    cands = [Candidate("A", clock.op("A", 0.001), pool_size=4), Candidate("B", clock.op("B", 0.02), pool_size=4),
             Candidate("C", clock.op("C", 0.1), pool_size=4)]
    out = measure(cands, b, clock)
    assert out["A"].warmup_calls == 10 and out["B"].warmup_calls == 1 and out["C"].warmup_calls == 1
    # reps 50, 5, 3 -> 3 rounds (the fewest reps) -> blocks of 17, 2 and 1 calls a round
    assert [len(out[k].samples_s) for k in "ABC"] == [51, 6, 3]
    for key, t in (("A", 0.001), ("B", 0.02), ("C", 0.1)):
        st = out[key].stats
        assert st["median_s"] == pytest.approx(t) and st["iqr_s"] == pytest.approx(0.0)
    timed = clock.calls[12:]  # after the warm-up: 10 + 1 + 1 calls
    firsts = [timed[0][0], timed[17 + 2 + 1][0], timed[2 * (17 + 2 + 1)][0]]
    assert firsts == ["A", "B", "C"], "the order rotates from round to round"
    # every call takes the next argument set: consecutive calls never share one
    indices = [i for _, i in clock.calls]
    assert all(a != b for a, b in zip(indices, indices[1:]))
    assert set(i for k, i in clock.calls if k == "A") == {0, 1, 2, 3}


def test_measure_spread_is_reported():
    clock = FakeClock()
    b = Budget(warmup_s=0.0, measure_s=0.0, min_reps=8, max_reps=8, rounds=2)
    times = [0.010, 0.011, 0.012, 0.013, 0.014, 0.015, 0.016, 0.050]
    out = measure([Candidate("A", clock.op("A", lambda n: times[(n - 2) % 8]))], b, clock)
    st = out["A"].stats
    assert st["n"] == 8
    assert st["median_s"] == pytest.approx(np.median(times))
    assert st["iqr_s"] == pytest.approx(np.percentile(times, 75) - np.percentile(times, 25))


def test_a_failing_candidate_is_reported_not_fatal():
    clock = FakeClock()
    b = Budget(warmup_s=0.0, measure_s=0.01, min_reps=4, max_reps=4, rounds=2)
    out = measure([Candidate("ok", clock.op("ok", 0.001)), Candidate("bad", clock.op("bad", 0.001, fail_at=3))],
                  b, clock)
    assert out["bad"].error == "RuntimeError: boom"
    assert out["ok"].error is None and out["ok"].stats["n"] == 4


def test_first_call_is_timed_apart_and_records_jit():
    clock = FakeClock()
    m = first_call(Candidate("A", clock.op("A", 0.5), is_numba=True), clock)
    assert m.first_call_s == pytest.approx(0.5)
    assert m.jit == {"compile_s": 0.0, "compiled": 0, "cache_loaded": 0, "kernels": []}
    bad = first_call(Candidate("B", clock.op("B", 0.1, fail_at=1)), clock)
    assert bad.error == "RuntimeError: boom" and bad.first_call_s is None


def test_first_call_counts_numba_compilation():
    from numba import njit

    @njit
    def add_one(a):
        return a + 1

    m = first_call(Candidate("jit", lambda i: add_one(np.arange(3.0)), is_numba=True))
    assert m.jit["compiled"] >= 1 and m.jit["compile_s"] > 0
    assert "test_first_call_counts_numba_compilation.<locals>.add_one" in m.jit["kernels"]
    again = first_call(Candidate("jit", lambda i: add_one(np.arange(3.0)), is_numba=True))
    assert again.jit["compiled"] == 0 and again.jit["cache_loaded"] == 0


# ---------------------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------------------


def test_environment_plan():
    plan = environment_plan()
    assert plan["OPENBLAS_CORETYPE"] is None and plan["OPENBLAS_L2_SIZE"] is None
    assert "NUMBA_THREADING_LAYER" not in plan and "OMP_WAIT_POLICY" not in plan
    assert environment_plan("workqueue")["NUMBA_THREADING_LAYER"] == "workqueue"
    kept = environment_plan("default", "unset", keep_env=True)
    assert kept == {}


def test_prepare_environment_records_changes(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    changes = prepare_environment({"OPENBLAS_CORETYPE": None, "OMP_WAIT_POLICY": "PASSIVE"})
    import os

    assert "OPENBLAS_CORETYPE" not in os.environ and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    assert changes["OPENBLAS_CORETYPE"]["was"] == "Haswell" and changes["OPENBLAS_CORETYPE"]["now"] is None
    assert changes["OMP_WAIT_POLICY"]["late"]  # numpy is imported: the result file says it came late


# ---------------------------------------------------------------------------------------
# Reports from a small synthetic result file, and --compare
# ---------------------------------------------------------------------------------------

PEAK, BW = 100.0, 10.0  # GFLOP/s and GB/s of the synthetic machine


def synthetic_doc(times: dict, torch_times: dict, transform=None) -> dict:
    """A result document: problems of dw_vs_standard at 64x56x56, given median times.

    ``times[(layer, layout)] = {algo: seconds}`` (fastconv), ``torch_times[(layer, layout)]``;
    ``transform(problem)``: the problem to record instead (None: leave the layer out).
    """
    from bench.run import SCHEMA

    problems, results = [], []
    for index, (layer, problem) in enumerate(load_suite("dw_vs_standard")):
        if problem.batch != 1 or not layer.endswith("c64.56"):
            continue
        if transform is not None and (problem := transform(problem)) is None:
            continue
        layouts = {}
        for layout in ("nchw", "nhwc"):
            fc = times.get((layer, layout))
            if fc is None:
                continue
            alias = AUTO[layer]
            layouts[layout] = {"algorithms": list(fc), "timed": list(fc), "auto_alias": alias,
                               "auto_label": alias or "depthwise+im2col",
                               "pool_sets": 4, "set_bytes": problem.set_bytes(layout)}
            for algo, t in fc.items():
                results.append(_row(layer, problem, layout, "fastconv", algo, t))
            results.append(_row(layer, problem, layout, "torch", None, torch_times[(layer, layout)]))
        problems.append({"suite": "dw_vs_standard", "index": index, "layer": layer, **problem.describe(),
                         "layouts": layouts})
    return {"schema": SCHEMA, "created": "2025-01-01T00:00:00+00:00", "command": ["python", "-m", "bench.run"],
            "settings": {"suites": ["dw_vs_standard"], "threads": 2, "dtype": "float32", "quick": True,
                         "budget": Budget().to_json(), "pool_bytes": 1 << 26, "layouts": ["nchw", "nhwc"]},
            "environment": {"changed": {}, "threading_layer": "workqueue", "omp_wait_policy": "passive"},
            "machine": {"cpu": {"model": "Synthetic CPU"}, "versions": {"numpy": "x"}, "git": {"commit": "abc"},
                        "load_avg": [0.0, 0.0, 0.0],
                        "measured": {"peak_gflops": PEAK, "peak_source": "fake", "bandwidth_gbs": BW,
                                     "dram_bandwidth_gbs": BW / 2, "ridge_flop_per_byte": PEAK / BW,
                                     "gemm": {"fake": {"gflops": PEAK}},
                                     "bandwidth": {"pool": {"footprint_bytes": 1 << 26},
                                                   "dram": {"footprint_bytes": 1 << 30}}}},
            "problems": problems, "results": results, "skipped": [], "finished": True, "duration_s": 1.0}


def _row(layer, problem, layout, library, algo, t):
    samples = [t * f for f in (0.9, 1.0, 1.0, 1.1)]
    row = {"suite": "dw_vs_standard", "layer": layer, "name": problem.name(), "layout": layout,
           "library": library, "algo": algo, "first_call_s": 10 * t, "warmup_calls": 1, "warmup_s": t,
           "stats": summarize(samples), "samples_s": samples, "error": None}
    if library == "fastconv":
        row["jit"] = {"compile_s": 0.1, "compiled": 1, "cache_loaded": 0, "kernels": ["k"]}
        row["check"] = {"ok": True, "rel_err": 1e-7, "tol": 1e-4}
    return row


MS = 1e-3
AUTO = {"std.c64.56": "im2col", "dw.c64.56": "depthwise", "pw.c64.56": "im2col", "sep.c64.56": None}
TIMES = {
    ("std.c64.56", "nchw"): {"direct": 8 * MS, "im2col": 4 * MS},
    ("dw.c64.56", "nchw"): {"direct": 5 * MS, "im2col": 4 * MS, "depthwise": 0.5 * MS},
    ("pw.c64.56", "nchw"): {"direct": 1 * MS, "im2col": 2 * MS},
    ("sep.c64.56", "nchw"): {"auto": 2 * MS, "direct": 6 * MS, "im2col": 7 * MS},
    ("std.c64.56", "nhwc"): {"direct": 6 * MS, "im2col": 3 * MS},
    ("dw.c64.56", "nhwc"): {"direct": 5 * MS, "im2col": 4 * MS, "depthwise": 0.4 * MS},
    ("pw.c64.56", "nhwc"): {"direct": 1 * MS, "im2col": 1.5 * MS},
    ("sep.c64.56", "nhwc"): {"auto": 1.6 * MS, "direct": 6 * MS, "im2col": 7 * MS},
}
TORCH = {("std.c64.56", "nchw"): 2 * MS, ("dw.c64.56", "nchw"): 0.25 * MS, ("pw.c64.56", "nchw"): 0.5 * MS,
         ("sep.c64.56", "nchw"): 0.8 * MS, ("std.c64.56", "nhwc"): 1.5 * MS, ("dw.c64.56", "nhwc"): 0.2 * MS,
         ("pw.c64.56", "nhwc"): 0.4 * MS, ("sep.c64.56", "nhwc"): 0.6 * MS}


def test_derive_computes_rates_bounds_and_ratios():
    from bench.report import derive, dw_pairs, summary

    doc = synthetic_doc(TIMES, TORCH)
    entries = {(e["layer"], e["layout"]): e for e in derive(doc)}
    std = entries[("std.c64.56", "nchw")]
    assert std["auto_algo"] == "im2col" and std["t_fastconv"] == pytest.approx(4 * MS)
    assert std["ratio"] == pytest.approx(2.0) and std["best_algo"] == "im2col"
    flops = 2 * 64 * 64 * 9 * 56 * 56
    assert std["gflops"] == pytest.approx(flops / 4e-3 / 1e9)
    assert std["bound"] == "compute"  # intensity 132 FLOP/B > ridge 10
    assert std["pct_bound"] == pytest.approx(100 * std["gflops"] / PEAK)
    dw = entries[("dw.c64.56", "nchw")]
    assert dw["bound"] == "memory"  # intensity 2.2 < 10
    assert dw["pct_bound"] == pytest.approx(100 * dw["gbs"] / BW)
    assert dw["ratio"] == pytest.approx(2.0)
    pw = entries[("pw.c64.56", "nchw")]
    assert pw["auto_algo"] == "im2col" and pw["best_algo"] == "direct"
    assert pw["ratio"] == pytest.approx(4.0) and pw["ratio_best"] == pytest.approx(2.0)
    assert pw["auto_over_best"] == pytest.approx(2.0)
    sep = entries[("sep.c64.56", "nchw")]
    assert sep["auto_algo"] == "auto" and sep["ratio"] == pytest.approx(2.5)

    pairs = {p["layout"]: p for p in dw_pairs(derive(doc))}
    p = pairs["nchw"]
    assert p["flop_saving"] == pytest.approx(flops / (2 * 64 * 9 * 3136 + 2 * 64 * 64 * 3136))
    assert p["fastconv_saving"] == pytest.approx(4 / 2) and p["torch_saving"] == pytest.approx(2 / 0.8)
    assert p["fastconv_parts_s"] == pytest.approx((0.5 + 2) * MS)

    rows = {r["layout"]: r for r in summary(derive(doc))}
    assert rows["nchw"]["geomean_ratio"] == pytest.approx((2.0 * 2.0 * 4.0 * 2.5) ** 0.25)
    assert rows["nchw"]["sum_ratio"] == pytest.approx((4 + 0.5 + 2 + 2) / (2 + 0.25 + 0.5 + 0.8))


def test_report_is_rebuilt_from_json(tmp_path):
    from bench import report

    path = tmp_path / "synthetic.json"
    path.write_text(json.dumps(synthetic_doc(TIMES, TORCH)))
    assert report.main([str(path), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "synthetic.md").read_text()
    for png in ("synthetic-roofline.png", "synthetic-dw-vs-standard.png", "synthetic-ratios.png"):
        data = (tmp_path / "out" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and png in md
    assert "Synthetic CPU" in md
    assert "| std.c64.56 | `conv2d_mb1_g1ic64oc64_ih56iw56_kh3kw3_ph1w1` | nchw |" in md
    assert "**2.00**" in md  # the std conv's ratio
    assert "## Depthwise-separable against standard 3x3 convolution" in md
    assert f"**{PEAK:.1f} GFLOP/s**" in md and f"**{BW:.1f} GB/s**" in md


def test_targets_are_computed_from_the_run_and_fill_the_readme_block(tmp_path):
    from bench import report

    doc = synthetic_doc(TIMES, TORCH)
    doc["startup"] = {"import_s": 0.2, "first_call_cached_s": 0.7, "first_call_cold_s": 4.0, "processes": 3}
    path = tmp_path / "synthetic.json"
    path.write_text(json.dumps(doc))
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench-targets:start -->\nold\n<!-- bench-targets:end -->\noutro\n")
    assert report.main([str(path), "--out", str(tmp_path / "out"), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n<!-- bench-targets:start -->") and text.endswith("<!-- bench-targets:end -->\noutro\n")
    assert "old" not in text and "[out/synthetic.md](out/synthetic.md)" in text
    # nchw ratios 2, 2, 4, 2.5 (geomean 2.51); spread from the quartiles (0.975 and 1.025 of each median)
    assert "| dw_vs_standard: fastconv / PyTorch | nchw | 2.51 | 2.39–2.64 | 4 | at most 1 | missed |" in text
    assert "| `import fastconv`, s | — | 0.20 |  | 3 | at most 0.5 | **met** |" in text
    assert "| first call, kernels in Numba's cache, s | — | 0.70 |  | 3 | at most 0.5 | missed |" in text
    assert "## Targets" in (tmp_path / "out" / "synthetic.md").read_text()
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="bench-targets:start"):
        report.main([str(path), "--out", str(tmp_path / "out"), "--readme", str(readme)])


def test_compare_flags_ratios_that_got_worse(tmp_path, capsys):
    from bench import report

    old = synthetic_doc(TIMES, TORCH)
    worse = dict(TIMES)
    worse[("std.c64.56", "nchw")] = {"direct": 8 * MS, "im2col": 4.8 * MS}  # ratio 2.0 -> 2.4: +20%
    worse[("pw.c64.56", "nhwc")] = {"direct": 1.1 * MS, "im2col": 1.5 * MS}  # +10%: within the margin
    new = synthetic_doc(worse, TORCH)
    c = report.compare(old, new, 0.15)
    flagged = {(f["layer"], f["layout"], f["algo"]) for f in c["flagged"]}
    assert flagged == {("std.c64.56", "nchw", "im2col"), ("std.c64.56", "nchw", "auto")}
    assert c["flagged"][0]["change"] == pytest.approx(0.2)
    assert report.compare(old, new, 0.25)["flagged"] == []
    assert report.compare(new, old, 0.15)["improved"]  # the way back is an improvement

    old_path, new_path = tmp_path / "old.json", tmp_path / "new.json"
    old_path.write_text(json.dumps(old))
    new_path.write_text(json.dumps(new))
    assert report.main([str(new_path), "--compare", str(old_path), "--out", str(tmp_path / "r")]) == 1
    assert "WORSE" in capsys.readouterr().out
    assert report.main([str(old_path), "--compare", str(old_path), "--out", str(tmp_path / "r")]) == 0
    assert "## Regression check" in (tmp_path / "r" / "old.md").read_text()


# ---------------------------------------------------------------------------------------
# One real problem, end to end, with a tiny budget (no timing assertions)
# ---------------------------------------------------------------------------------------


def test_run_problem_end_to_end():
    pytest.importorskip("torch")
    from bench.run import run_problem

    problem = parse("conv2d_mb1_g4ic4oc4_ih8iw8_kh3kw3_ph1w1")
    assert isinstance(problem, ConvProblem)
    budget = Budget(warmup_s=0.0, measure_s=0.0, min_reps=3, max_reps=3, rounds=1)
    facts, rows = run_problem(problem, layouts=["nchw", "nhwc"], algos=[], budget=budget, pool_bytes=1 << 16,
                              rng=np.random.default_rng(0))
    assert facts["nchw"]["auto_alias"] == "depthwise"
    assert facts["nchw"]["pool_sets"] >= 2
    libs = {(r["layout"], r["library"], r["algo"]) for r in rows}
    assert ("nchw", "torch", None) in libs and ("nhwc", "torch", None) in libs
    assert {a for lay, lib, a in libs if lib == "fastconv" and lay == "nchw"} == set(facts["nchw"]["algorithms"])
    for r in rows:
        assert r["error"] is None, r
        assert r["stats"]["n"] == 3 and math.isfinite(r["stats"]["median_s"])
        if r["library"] == "fastconv":
            assert r["check"]["ok"], r["check"]


def test_list_cli(capsys):
    from bench.run import main

    assert main(["--list", "--suite", "pooling", "--match", "spp"]) == 0
    out = capsys.readouterr().out
    assert "spatial_pyramid_pool2d_mb1_c256_ih13iw13_l1.2.4" in out and out.count("\n") == 1


# ---------------------------------------------------------------------------------------
# Process mode: each library in its own process, its own environment
# ---------------------------------------------------------------------------------------


def test_worker_environments(monkeypatch):
    from bench.processes import worker_env

    base = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "1", "OMP_WAIT_POLICY": "ACTIVE", "PATH": "/bin"}
    assert worker_env("torch", keep_env=False, base=base) == base  # the harness sets nothing for PyTorch
    fastconv = worker_env("fastconv", keep_env=False, base=base)
    assert fastconv == {"OMP_WAIT_POLICY": "ACTIVE", "PATH": "/bin"}
    assert worker_env("fastconv", keep_env=True, base=base) == base


def _smallest(suite):
    return min(enumerate(load_suite(suite)), key=lambda t: t[1][1].flops)


def test_process_pair_times_both_libraries_in_their_own_processes():
    from bench.processes import ProcessPair

    index, (layer, problem) = _smallest("mobilenet_v2")
    budget = Budget(warmup_s=0.0, measure_s=0.0, min_reps=4, max_reps=4, rounds=2)
    pair = ProcessPair("float32")
    try:
        workers = pair.describe()
        facts, rows = pair.run_problem("mobilenet_v2", index, problem, layouts=["nchw", "nhwc"], algos=["auto"],
                                       budget=budget, pool_bytes=1 << 16, seed=0)
    finally:
        pair.close()
    assert workers["fastconv"]["pid"] != workers["torch"]["pid"]
    assert workers["fastconv"]["threading_layer"] == "tbb"
    assert "OPENBLAS_CORETYPE" not in workers["fastconv"]["env"]
    import os

    if "OPENBLAS_CORETYPE" in os.environ:  # as the machine has it: PyTorch's process keeps it
        assert workers["torch"]["env"]["OPENBLAS_CORETYPE"] == os.environ["OPENBLAS_CORETYPE"]
    assert facts["nchw"]["auto_alias"] or facts["nchw"]["auto_label"]
    libs = {(r["layout"], r["library"]) for r in rows}
    assert libs == {("nchw", "fastconv"), ("nhwc", "fastconv"), ("nchw", "torch"), ("nhwc", "torch")}
    for r in rows:
        assert r["error"] is None, r
        assert r["stats"]["n"] == 4 and len(r["round_medians_s"]) == 2
        if r["library"] == "fastconv":
            assert r["check"]["ok"], r["check"]


def test_run_cli_process_mode_leaves_the_readme_alone(tmp_path):
    from bench.run import main

    readme = Path(__file__).resolve().parents[1] / "README.md"
    before = readme.read_bytes()
    out = tmp_path / "r.json"
    assert main(["--suite", "pooling", "--match", "spp", "--quick", "--no-startup", "--no-progress",
                 "--layout", "nchw", "--out", str(out), "--report", str(tmp_path / "rep"), "--min-reps", "2",
                 "--max-reps", "2", "--warmup", "0", "--measure", "0"]) == 0
    assert readme.read_bytes() == before
    doc = json.loads(out.read_text())
    assert doc["settings"]["mode"] == "process" and doc["finished"]
    assert set(doc["environment"]["workers"]) == {"fastconv", "torch"}
    assert {r["library"] for r in doc["results"]} == {"fastconv", "torch"}
    md = (tmp_path / "rep" / "r.md").read_text()
    assert "each library in its own process with its own default environment" in md
    assert "- fastconv process: Numba" in md and "- torch process:" in md


def test_companion_targets_inprocess_and_busy():
    from bench.report import derive
    from bench.report.targets import target_rows

    doc = synthetic_doc(TIMES, TORCH)
    slower = {k: {a: 1.2 * t for a, t in v.items()} for k, v in TIMES.items()}  # fastconv 20% slower beside torch
    inprocess = synthetic_doc(slower, TORCH)
    rows = {(r[0], r[1]): r for r in target_rows(doc, derive(doc), {"inprocess": inprocess})}
    shared = rows[("fastconv with PyTorch imported and used in its process / fastconv alone", "nchw")]
    assert shared[2] == pytest.approx(1.2) and shared[4] == 4 and shared[5] == 1.10
    overall = rows[("every suite and layout: geomean of the rows above", "both")]
    assert overall[2] == pytest.approx((rows[("dw_vs_standard: fastconv / PyTorch", "nchw")][2]
                                        * rows[("dw_vs_standard: fastconv / PyTorch", "nhwc")][2]) ** 0.5)
    # a busy run of another suite's layers covers no busy target: no row
    assert not any(r[0].startswith("one core busy") for r in target_rows(doc, derive(doc), {"busy": inprocess}))


def test_backward_companion_targets_and_report(tmp_path):
    """The backward pass (``--also backward``): per-suite and depthwise ratios against PyTorch's
    backward, the worst backward / own-forward ratio, and the forward-and-backward table."""
    from bench.problems import ConvBackwardProblem, backward_of
    from bench.report import derive
    from bench.report.targets import target_rows

    doc = synthetic_doc(TIMES, TORCH)
    backward_times = {k: {"auto": 2 * v[AUTO[k[0]]]} for k, v in TIMES.items() if AUTO[k[0]]}
    backward_torch = {k: 4 * t for k, t in TORCH.items()}
    backward = synthetic_doc(backward_times, backward_torch, transform=backward_of)
    assert {p["layer"] for p in backward["problems"]} == {"std.c64.56", "dw.c64.56", "pw.c64.56"}
    assert all(p["name"].startswith("backward_conv2d_") for p in backward["problems"])
    rows = {(r[0], r[1]): r for r in target_rows(doc, derive(doc), {"backward": backward})}
    # fastconv's backward is 2x its forward, PyTorch's 4x: every backward ratio is half the forward's
    suite = rows[("backward, dw_vs_standard: fastconv / PyTorch", "nchw")]
    assert suite[2] == pytest.approx((1.0 * 1.0 * 2.0) ** (1 / 3)) and suite[4] == 3 and suite[5] == 1.0
    assert rows[("backward, depthwise layers: fastconv / PyTorch", "nhwc")][2] == pytest.approx(0.4 / 0.2 / 2)
    worst = rows[("backward / fastconv's own forward, the worst layer", "nchw")]
    assert worst[2] == pytest.approx(2.0) and worst[4] == 3 and worst[5] == 2.2
    main_json, backward_json = tmp_path / "r.json", tmp_path / "r-backward.json"
    main_json.write_text(json.dumps(doc))
    backward_json.write_text(json.dumps(backward))
    from bench import report

    assert report.main([str(main_json), "--companion", f"backward={backward_json}", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "r.md").read_text()
    assert "## Forward and backward" in md
    assert "| dw_vs_standard:dw.c64.56 | depthwise | nchw | 0.5 | 1 ± 0.05 | 2.00 | 0.25 | 1 ± 0.05 | 2.00 | **1.00** |" in md

    problem = backward_of(parse("conv2d_mb1_g1ic8oc16_ih9iw9_kh3kw3_sh2w2_ph1w1"))
    assert isinstance(problem, ConvBackwardProblem) and parse(problem.name()) == problem
    assert problem.flops == 4 * problem.spec.macs
    assert [a.shape for a in problem.in_layout(problem.make_arrays(np.random.default_rng(0)), "nhwc")] == [
        (1, 9, 9, 8), (16, 8, 3, 3), (1, 5, 5, 16)]
    assert backward_of(parse("conv_transpose2d_mb1_g1ic8oc16_ih9iw9_kh3kw3_sh2w2_ph1w1")) is None


@pytest.mark.parametrize("name", ["conv2d_mb2_g1ic4oc6_ih7iw7_kh3kw3_sh2w2_ph1w1",
                                  "conv2d_mb1_g8ic8oc8_ih9iw9_kh3kw3_dh2w2_ph2w2"])
def test_backward_problem_end_to_end(name):
    """fastconv.grad's input and weight gradients against PyTorch's convolution_backward on the
    same data, both layouts, through the harness's own check."""
    pytest.importorskip("torch")
    from bench.problems import backward_of
    from bench.run import run_problem

    problem = backward_of(parse(name))
    budget = Budget(warmup_s=0.0, measure_s=0.0, min_reps=2, max_reps=2, rounds=1)
    facts, rows = run_problem(problem, layouts=["nchw", "nhwc"], algos=[], budget=budget, pool_bytes=1 << 16,
                              rng=np.random.default_rng(0))
    assert {(r["layout"], r["library"]) for r in rows} == {(lay, lib) for lay in ("nchw", "nhwc")
                                                           for lib in ("fastconv", "torch")}
    for r in rows:
        assert r["error"] is None, r
        if r["library"] == "fastconv":
            assert r["check"]["ok"] and r["check"]["rel_err"] < 1e-5, r["check"]


# ---------------------------------------------------------------------------------------
# The training-step pass (``--also training``, bench/training.py)
# ---------------------------------------------------------------------------------------


def test_bench_models_are_torchvisions():
    """Parameter counts and state_dict keys of torchvision's resnet18 and mobilenet_v2 (1000 classes)."""
    pytest.importorskip("torch")
    from bench.models import mobilenet_v2, resnet18

    resnet, mobilenet = resnet18(), mobilenet_v2()
    assert sum(p.numel() for p in resnet.parameters()) == 11_689_512
    assert sum(p.numel() for p in mobilenet.parameters()) == 3_504_872
    keys = set(resnet.state_dict())
    assert {"conv1.weight", "layer1.0.bn1.running_mean", "layer2.0.downsample.0.weight", "fc.bias"} <= keys
    keys = set(mobilenet.state_dict())
    assert {"features.0.0.weight", "features.1.conv.0.0.weight", "features.2.conv.0.1.num_batches_tracked",
            "features.18.0.weight", "classifier.1.weight"} <= keys


def test_run_cli_training_companion(tmp_path, monkeypatch):
    """``--also training`` on the tiny net, both layouts: each side in its own process, the same
    first loss, the JSON beside the main run's and the report's section and targets."""
    pytest.importorskip("torch")
    from bench import training
    from bench.run import main

    monkeypatch.setattr(training, "MODELS", ("tiny",))
    monkeypatch.setattr(training, "BATCH", 2)
    monkeypatch.setattr(training, "SIZE", 16)
    monkeypatch.setattr(training, "CLASSES", 4)
    monkeypatch.setattr(training, "QUICK_BUDGET", Budget(warmup_s=0.0, measure_s=0.0, min_reps=2, max_reps=2,
                                                         rounds=2))
    out = tmp_path / "r.json"
    assert main(["--suite", "pooling", "--match", "spp", "--quick", "--no-startup", "--no-progress", "--layout",
                 "nchw,nhwc", "--out", str(out), "--report", str(tmp_path / "rep"), "--min-reps", "2",
                 "--max-reps", "2", "--warmup", "0", "--measure", "0", "--also", "training"]) == 0
    doc = json.loads((tmp_path / "r-training.json").read_text())
    assert doc["settings"]["pass"] == "training" and doc["finished"]
    assert set(doc["environment"]["workers"]) == {"fastconv", "torch"}
    rows = doc["training"]
    assert {(r["layout"], r["library"]) for r in rows} == {(lay, lib) for lay in ("nchw", "nhwc")
                                                           for lib in ("fastconv", "torch")}
    for r in rows:
        assert r["error"] is None, r
        assert r["loss_check"]["ok"], r["loss_check"]
        assert r["stats"]["n"] == 2 and len(r["round_medians_s"]) == 2
        if r["library"] == "fastconv":
            assert r["swapped"] == 8 and r["left"] == []  # every conv and pool of the net
    md = (tmp_path / "rep" / "r.md").read_text()
    assert "## Training step" in md and "| training step, tiny test net: converted / PyTorch | nhwc |" in md


def _training_doc(fastconv_s, torch_s):
    rows = []
    for model in ("resnet18", "mobilenet_v2"):
        for layout in ("nchw", "nhwc"):
            check = {"ok": True, "fastconv": 6.9, "torch": 6.9, "rel_err": 0.0, "rtol": 1e-3}
            for lib, t in (("fastconv", fastconv_s), ("torch", torch_s)):
                stats = {"n": 10, "median_s": t, "q1_s": 0.9 * t, "q3_s": 1.1 * t}
                rows.append({"library": lib, "model": model, "layout": layout, "first_loss": 6.9, "error": None,
                             "first_step_s": 2.0, "loss_check": check, "stats": stats,
                             **({"swapped": 21, "left": []} if lib == "fastconv" else {})})
    return {"created": "2025-01-01T00:00:00+00:00", "machine": {"load_avg": [0.5, 0.5, 0.5]},
            "settings": {"pass": "training", "mode": "process", "models": ["resnet18", "mobilenet_v2"], "batch": 8,
                         "size": 112, "classes": 1000, "optimizer": "SGD lr 0.01 momentum 0.9"},
            "problems": [], "results": [], "training": rows}


def test_training_targets_and_report_section(tmp_path):
    from bench import report
    from bench.report import derive
    from bench.report.targets import target_rows

    doc, training = synthetic_doc(TIMES, TORCH), _training_doc(0.3, 0.25)
    rows = {(r[0], r[1]): r for r in target_rows(doc, derive(doc), {"training": training})}
    row = rows[("training step, ResNet-18: converted / PyTorch", "nhwc")]
    assert row[2] == pytest.approx(1.2) and row[3] == pytest.approx((0.9 * 0.3 / 0.275, 1.1 * 0.3 / 0.225))
    assert row[4] == 10 and row[5] == 1.0
    main_json, training_json = tmp_path / "r.json", tmp_path / "r-training.json"
    main_json.write_text(json.dumps(doc))
    training_json.write_text(json.dumps(training))
    assert report.main([str(main_json), "--companion", f"training={training_json}", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "r.md").read_text()
    assert "## Training step" in md
    assert "| ResNet-18 | nchw | 300 (270–330) | 250 (225–275) | 1.20 | 0.98–1.47 | 10 |" in md
    assert "a training step of resnet18, mobilenet_v2, batch 8" in md


def test_passes_join_on_the_problem_as_well_as_the_layer_name():
    """dw_vs_standard holds "std.c128.56" at batch 1 and at batch 8: each backward (and
    in-process) row must meet the forward row of its own batch."""
    from bench.report.targets import _match

    def entry(name, t):
        return {"suite": "dw_vs_standard", "layer": "std.c128.56", "name": name, "layout": "nchw", "t": t}

    forward = [entry("conv2d_mb1_x", 1.0), entry("conv2d_mb8_x", 8.0)]
    backward = [entry("backward_conv2d_mb8_x", 16.0), entry("backward_conv2d_mb1_x", 2.0)]
    assert [(b["t"], f["t"]) for b, f in _match(backward, forward)] == [(16.0, 8.0), (2.0, 1.0)]
