"""Adversarial front-end tests (issue 11): ndarray subclasses, extreme integers, memory
guards, bounded caches, Numba cache damage and non-finite arguments.

Cases come from the op registry (fastconv.testing.registry: the samples tagged
``every_op``, one small call of each conv, pooling, window and separable op; the conv
family's curated samples), so an op registered there is tested here too. Non-finite *values* per algorithm and kernel are
tests/test_nonfinite.py's; this module covers what the front end does with them.
Subprocess tests run no more than one small kernel compile each.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fastconv as F
from fastconv import _cache
from fastconv.reference import conv as reference_conv
from fastconv.testing.registry import samples
from fastconv.testing.tolerances import assert_close

SAMPLES = samples(tags={"every_op"})
ROOT = Path(__file__).resolve().parents[1]


class UserArray(np.ndarray):
    """A user's ndarray subclass, as a library might define one."""


def _results(r):
    return [np.asarray(a) for a in (r if isinstance(r, tuple) else (r,))]


def _memmap(a, tmp_path, i):
    m = np.memmap(tmp_path / f"a{i}.bin", a.dtype, "w+", shape=a.shape)
    m[...] = a
    return m


# ---- ndarray subclasses ---------------------------------------------------------------

@pytest.mark.parametrize("kind", ["memmap", "user_subclass"])
@pytest.mark.parametrize("s", SAMPLES, ids=str)
def test_ndarray_subclasses_work_in_every_op(s, kind, rng, tmp_path):
    """np.memmap and a user's subclass give the plain array's result, in every op
    (separable_conv2d with algo fused/composed once rejected memmap input)."""
    arrays = s.arrays(rng)
    expected = _results(s.call(F, arrays))
    if kind == "memmap":
        wrapped = [_memmap(a, tmp_path, i) for i, a in enumerate(arrays)]
    else:
        wrapped = [a.view(UserArray) for a in arrays]
    for _ in range(2):  # the first call and the repeated one (call-plan cache)
        got = _results(s.call(F, wrapped))
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            np.testing.assert_array_equal(g, e)


# ---- extreme integers -----------------------------------------------------------------

@pytest.mark.parametrize("value", [2**63, 2**62, 2**31, -(2**63)], ids=["2**63", "2**62", "2**31", "-2**63"])
@pytest.mark.parametrize("s", [s for s in SAMPLES if s.geometry], ids=str)
def test_extreme_integers_name_the_argument(s, value, rng):
    """Huge and hugely negative geometry ints raise ValueError naming the argument and
    the value (not OverflowError from a planner); output sizes beyond memory raise
    MemoryError naming the op."""
    arrays = s.arrays(rng)
    for name in s.geometry:
        with pytest.raises((ValueError, TypeError, MemoryError)) as err:
            s.call(F, arrays, **{name: value})
        text = str(err.value)
        if err.type is MemoryError:
            assert s.op in text and "bytes" in text, text
        else:
            assert name in text and str(value) in text, text


@pytest.mark.parametrize("value", ["abc", None, [1.0], True])
def test_padding_value_must_be_a_number(value, rng):
    x, w = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3))
    with pytest.raises(TypeError, match=r"conv2d: padding_value=.* must be a real number"):
        F.conv2d(x, w, padding=1, padding_mode="constant", padding_value=value)


# ---- non-finite arguments (the front end's side) --------------------------------------

@pytest.mark.parametrize("fill", [np.nan, np.inf, -np.inf, np.float32(np.nan)], ids=["nan", "inf", "-inf", "f32nan"])
@pytest.mark.parametrize("s", [s for s in samples(family="conv", tags={"curated", "padding_mode"})
                               if s.args["padding_mode"] == "constant"], ids=str)
def test_non_finite_padding_value_reaches_exactly_the_padded_windows(s, fill, rng):
    x, w, b = s.arrays(rng)
    args = {**s.args, "padding_value": fill}
    got = F.conv2d(x, w, b, **args) if s.op == "conv2d" else getattr(F, s.op)(x, w, b, **args)
    want = reference_conv(x, w, b, **args)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    assert_close(got[finite], want[finite], "conv", got.dtype)


@pytest.mark.parametrize("p", [np.nan, -np.inf, 0.0, -2.0])
def test_lp_norm_type_must_be_positive(p, rng):
    with pytest.raises(ValueError, match="norm_type"):
        F.lp_pool2d(rng.standard_normal((1, 2, 6, 6)), p, 2)


# ---- memory guards ----------------------------------------------------------------------

@pytest.mark.parametrize("s", [s for s in SAMPLES if s.huge], ids=str)
def test_output_beyond_memory_fails_at_once(s, rng):
    """Outputs of several GiB or more under a 1 GiB address-space headroom: MemoryError
    naming the op, the output shape and its bytes, raised before any planning (the
    subprocess allocates nothing of the output: an mmap that fails)."""
    script = f"""
        import resource, numpy as np, fastconv as F
        from fastconv.testing.registry import samples
        s = [s for s in samples(tags={{"every_op"}}) if str(s) == {str(s)!r}][0]
        arrays = s.arrays(np.random.default_rng(0))
        with open("/proc/self/status") as f:
            vm = [int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:")][0]
        resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), resource.RLIM_INFINITY))
        try:
            s.call(F, arrays, **dict(s.huge))
        except MemoryError as e:
            print("MemoryError:", e)
        """
    out = _python(script)
    assert out.startswith("MemoryError:"), out
    # the shortcuts built on conv2d (depthwise, separable composed) report as conv2d
    assert f" {s.op}: " in out or (s.op in ("depthwise_conv2d", "separable_conv2d") and " conv2d: " in out), out
    assert "bytes" in out and "shape (" in out, out


def test_output_beyond_memory_fails_in_process(rng):
    """Outputs larger than any machine's memory need no subprocess: checked before planning."""
    x, w = np.ones((1, 1, 9, 9), np.float32), np.ones((1, 1, 3, 3), np.float32)
    with pytest.raises(MemoryError, match=r"conv2d: cannot allocate the output of shape \(1, 1, 2000007, 2000007\)"):
        F.conv2d(x, w, padding=10**6)
    with pytest.raises(MemoryError, match=r"conv_transpose2d: .* 256000192000036 bytes"):
        F.conv_transpose2d(x, w, stride=10**6)


def _python(script: str, env: dict | None = None) -> str:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          env=full, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip()


# ---- bounded caches -----------------------------------------------------------------------

def test_caches_are_bounded_in_bytes_and_clear(rng):
    """Plans of new shapes (the direct kernel's tiling is proportional to the output
    plane) count in one byte budget; clear_caches empties it."""
    previous = _cache.set_cache_limit(256 << 10)
    try:
        F.clear_caches()
        w = rng.standard_normal((2, 1, 3, 3)).astype(np.float32)
        for n in range(40, 400, 40):
            F.conv2d(np.ones((1, 1, n, n), np.float32), w, padding=1, algo="direct")
            F.max_pool2d(np.ones((1, 1, n, n), np.float32), 2)
            assert _cache.CACHE.nbytes <= 256 << 10
        assert len(_cache.CACHE) > 0
        F.clear_caches()
        assert len(_cache.CACHE) == 0 and _cache.CACHE.nbytes == 0
        F.conv2d(np.ones((1, 1, 500, 500), np.float32), w, padding=1, algo="direct")
        assert _cache.CACHE.nbytes > 10 * _cache.ENTRY_BYTES  # the tiling's arrays are counted
    finally:
        _cache.set_cache_limit(previous)


def test_cache_entry_larger_than_the_bound_is_not_kept():
    c = _cache.ByteCache(1 << 20)
    c.put("small", np.zeros(1000))
    c.put("big", np.zeros(1 << 18))  # 2 MiB
    assert c.get("big") is None and c.get("small") is not None
    for i in range(200):
        c.put(i, np.zeros(1000))
    assert c.nbytes <= 1 << 20 and c.get("small") is None and c.get(199) is not None


# ---- bad environment ----------------------------------------------------------------------

@pytest.mark.parametrize("variable", ["FASTCONV_WORKSPACE_MB", "FASTCONV_CACHE_MB"])
def test_bad_environment_variable_warns_and_takes_the_default(variable):
    out = _python("""
        import warnings
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            import fastconv
        print(fastconv.workspace_limit(), fastconv._cache.CACHE.limit, [str(m.message) for m in w])
        """, {variable: "abc"})
    assert out.startswith(f"{256 << 20} {64 << 20} ") and f"{variable}='abc'" in out, out


# ---- Numba cache damage ---------------------------------------------------------------------

_CALL = """
    import warnings, numpy as np
    import fastconv as F
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        y = F.max_pool1d(np.arange(8, dtype=np.float32).reshape(1, 1, 8), 2)
        y = F.max_pool1d(np.arange(8, dtype=np.float32).reshape(1, 1, 8), 2)
    print(y.ravel().tolist(), sum("fastconv" in str(m.message) for m in w))
    """


def test_damaged_numba_cache_recompiles_warns_once_and_heals(tmp_path):
    env = {"NUMBA_CACHE_DIR": str(tmp_path)}
    assert _python(_CALL, env) == "[1.0, 3.0, 5.0, 7.0] 0"
    files = sorted(tmp_path.rglob("*.nb[ic]"))
    assert files
    for f in files:  # truncate the indexes, garble the data
        data = f.read_bytes()
        f.write_bytes(data[:10] if f.suffix == ".nbi" else data[:len(data) // 3] + b"\xff" * 64)
    assert _python(_CALL, env) == "[1.0, 3.0, 5.0, 7.0] 1"
    assert _python(_CALL, env) == "[1.0, 3.0, 5.0, 7.0] 0"  # rewritten by the compile


def test_no_writable_cache_directory_compiles_in_memory(tmp_path):
    """As root every directory is writable, so the unwritable places are paths under a
    regular file (makedirs fails), and the in-tree locator (the package's __pycache__)
    is left out through Numba's NUMBA_CACHE_LOCATOR_CLASSES, as a read-only install."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    env = {"NUMBA_CACHE_DIR": str(blocker / "numba"), "HOME": str(blocker / "home"),
           "XDG_CACHE_HOME": str(blocker / "cache"),
           "NUMBA_CACHE_LOCATOR_CLASSES": "UserProvidedCacheLocator,UserWideCacheLocator"}
    assert _python(_CALL, env) == "[1.0, 3.0, 5.0, 7.0] 1"


@pytest.mark.parametrize("stride", [10**6, 2**31 - 1])
def test_transposed_stride_beyond_the_output_plans_per_output(stride, rng):
    """A stride far beyond a small output: the phase planner walks the output's phases only
    (it once looped over every residue of the stride)."""
    x, w = rng.standard_normal((1, 2, 1, 1)), rng.standard_normal((2, 3, 3, 3))
    got = F.conv_transpose2d(x, w, stride=stride)
    from fastconv.reference import conv_transpose
    np.testing.assert_allclose(got, conv_transpose(x, w, stride=stride), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("activation", [None, "relu"])
def test_transposed_stride_far_above_the_kernel_plans_the_tapped_phases_only(channels_last, activation, rng):
    """Stride 40 with a 3x3 kernel: 1591 of 1600 phases have no tap. They are one fill of
    activation(bias), not an entry each; the values match the reference."""
    from fastconv.cpu.conv.transpose import phases as conv_transpose_phases
    from fastconv.reference import activate, conv_transpose
    from fastconv.spec import resolve_conv

    x, w, b = rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(2)
    want = activate(conv_transpose(x, w, b, stride=40, padding=1), activation)
    xin = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if channels_last else x
    got = F.conv_transpose2d(xin, w, b, stride=40, padding=1, activation=activation, channels_last=channels_last)
    got = np.moveaxis(got, -1, 1) if channels_last else got
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    spec = resolve_conv("conv_transpose2d", xin.shape, w.shape, stride=40, padding=1, has_bias=True,
                        activation=activation, channels_last=channels_last)
    plan = conv_transpose_phases.phase_plan(spec)
    assert sum(len(g.phases) for g in plan.groups) == 9  # the 3x3 phases with taps; the fill group lists none


def test_fractional_pool_seed_is_named(rng):
    with pytest.raises(ValueError, match=r"fractional_max_pool2d: seed=-9223372036854775808 must be"):
        F.fractional_max_pool2d(rng.standard_normal((1, 2, 8, 8)), 2, output_size=4, seed=-(2**63))
