"""What the machine is, and what it can do: the ceilings every benchmark row is put against.

- :func:`describe`: CPU model and flags, cores and affinity, caches, memory, OS, Python,
  library versions (NumPy, Numba, PyTorch, fastconv), PyTorch's build (MKL, oneDNN),
  threadpoolctl's view of the BLAS/OpenMP pools, Numba's threading layer and thread
  count, the git commit (and whether the tree had changes), the environment variables
  that bear on speed, and the load average.
- :func:`measure`: FP32 GEMM throughput (NumPy's sgemm through its BLAS, and
  ``torch.mm`` through MKL) and memory bandwidth with a STREAM-style triad
  ``a = b + s * c`` (a Numba ``prange`` loop on the benchmark's threads, and PyTorch's
  ``torch.add(b, c, alpha=s, out=a)``), at two footprints: one far beyond the last-level
  cache (DRAM) and one the size of the benchmark's input pool (where a layer's inputs
  come from). STREAM's convention counts 3 arrays of traffic (no write-allocate).

The **peak** a row is compared with is the best median GEMM rate measured here; the
**bandwidth** is the best median triad rate at the pool's footprint. Their ratio is
the roofline's ridge point (FLOP/byte).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

BUSY_LOAD = 0.25  # a run is "busy" when the 1-minute load average exceeds this share of the CPUs


def is_busy(load_avg: float, cpus: int) -> bool:
    """Whether other processes shared the cores: the load average says so before the run's own threads."""
    return load_avg > BUSY_LOAD * max(cpus, 1)


# ---------------------------------------------------------------------------------------
# Description
# ---------------------------------------------------------------------------------------


def describe() -> dict:
    from . import recorded_environment

    return {
        "hostname": platform.node(),
        "cpu": _cpu(),
        "memory_bytes": _meminfo("MemTotal"),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "versions": _versions(),
        "torch_build": _torch_build(),
        "threadpools": _threadpools(),
        "numba": _numba_runtime(),
        "git": _git(),
        "env": recorded_environment(),
        "load_avg": list(os.getloadavg()),
    }


def _cpu() -> dict:
    info = {"model": platform.processor() or platform.machine(), "logical_cores": os.cpu_count()}
    try:
        info["affinity"] = len(os.sched_getaffinity(0))
    except AttributeError:
        info["affinity"] = os.cpu_count()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    blocks = [b for b in text.split("\n\n") if b.strip()]
    fields = dict(line.split(":", 1) for line in blocks[0].splitlines() if ":" in line) if blocks else {}
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    info["model"] = fields.get("model name", info["model"])
    flags = set(fields.get("flags", "").split())
    info["simd"] = sorted(f for f in flags if f.startswith(("avx", "fma", "sse4", "amx")))
    cores = {(b.split("physical id")[1].split("\n")[0], b.split("core id")[1].split("\n")[0])
             for b in blocks if "physical id" in b and "core id" in b}
    info["physical_cores"] = len(cores) or None
    info["mhz"] = float(fields["cpu MHz"]) if "cpu MHz" in fields else None
    info["caches"] = _caches()
    return info


def _caches() -> dict:
    out = {}
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for index in sorted(base.glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        name = f"L{level}" + ({"Data": "d", "Instruction": "i"}.get(kind, ""))
        out[name] = _size_bytes(size)
    return out


def _size_bytes(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}.get(text[-1:], 1)
    return int(float(text.rstrip("KMG")) * mult)


def last_level_cache_bytes() -> int:
    caches = _caches()
    return max(caches.values()) if caches else 32 * 1024 ** 2


def _meminfo(key: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _versions() -> dict:
    out = {"numpy": np.__version__}
    for name in ("numba", "torch", "fastconv", "threadpoolctl", "matplotlib"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # not installed, or broken: say so rather than fail
            out[name] = None
    return out


def _torch_build() -> dict:
    try:
        import torch
    except ImportError:
        return {}
    out = {"num_threads": torch.get_num_threads(), "num_interop_threads": torch.get_num_interop_threads(),
           "mkldnn": torch.backends.mkldnn.is_available(), "mkl": torch.backends.mkl.is_available()}
    try:
        out["parallel_info"] = torch.__config__.parallel_info()
        cfg = torch.__config__.show()
        out["onednn"] = next((ln.strip(" -") for ln in cfg.splitlines() if "MKL-DNN" in ln or "oneDNN" in ln), None)
        out["cpu_capability"] = next((ln.strip(" -") for ln in cfg.splitlines() if "CPU capability" in ln), None)
    except Exception:
        pass
    return out


def _threadpools() -> list:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return threadpool_info()


def _numba_runtime() -> dict:
    try:
        import numba
        from numba.core import config
    except ImportError:
        return {}
    out = {"num_threads": numba.get_num_threads(), "NUMBA_NUM_THREADS": config.NUMBA_NUM_THREADS,
           "threading_layer_requested": config.THREADING_LAYER}
    try:
        out["threading_layer"] = numba.threading_layer()
    except ValueError:
        out["threading_layer"] = None  # no parallel region has run yet
    for name in ("SLP_VECTORIZE", "CPU_NAME", "CPU_FEATURES", "OPT", "LOOP_VECTORIZE", "BOUNDSCHECK"):
        if hasattr(config, name):
            value = getattr(config, name)
            out[name] = value if isinstance(value, (int, float, str, bool, type(None))) else str(value)
    return out


def _git() -> dict:
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.rstrip()

    try:
        commit = git("rev-parse", "HEAD")
        status = git("status", "--porcelain")
    except (OSError, subprocess.SubprocessError):
        return {}
    changed = [line[3:] for line in status.splitlines() if line.strip()]
    return {"commit": commit or None, "describe": git("describe", "--always", "--dirty") or None,
            "dirty": bool(changed), "changed_files": changed[:50]}


# ---------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------


def _median_rate(fn, work: float, budget_s: float, min_reps: int = 3, clock=time.perf_counter) -> dict:
    """Run ``fn`` for ``budget_s`` after one warm-up call; rate = work / median time."""
    fn()
    times = []
    start = clock()
    while len(times) < min_reps or clock() - start < budget_s:
        t0 = clock()
        fn()
        times.append(clock() - t0)
        if len(times) >= 1000:
            break
    med = float(np.median(times))
    return {"median_s": med, "best_s": float(min(times)), "n": len(times), "rate": work / med,
            "best_rate": work / float(min(times))}


def measure_gemm(sizes=(1024, 2048), budget_s: float = 1.0) -> dict:
    """FP32 GEMM GFLOP/s: NumPy ``a @ b`` (its BLAS) and ``torch.mm``, square sizes."""
    rng = np.random.default_rng(0)
    out = {}
    for n in sizes:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        c = np.empty((n, n), np.float32)
        flop = 2.0 * n ** 3
        r = _median_rate(lambda a=a, b=b, c=c: np.matmul(a, b, out=c), flop, budget_s)
        out[f"numpy_sgemm_{n}"] = {"n": n, "gflops": r["rate"] / 1e9, "best_gflops": r["best_rate"] / 1e9,
                                   "median_s": r["median_s"], "reps": r["n"]}
        try:
            import torch

            ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)
            r = _median_rate(lambda ta=ta, tb=tb, tc=tc: torch.mm(ta, tb, out=tc), flop, budget_s)
            out[f"torch_mm_{n}"] = {"n": n, "gflops": r["rate"] / 1e9, "best_gflops": r["best_rate"] / 1e9,
                                    "median_s": r["median_s"], "reps": r["n"]}
        except ImportError:
            pass
    return out


_TRIAD = None


def _numba_triad():
    global _TRIAD
    if _TRIAD is None:
        import numba

        @numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
        def triad(a, b, c, s):
            for i in numba.prange(a.size):
                a[i] = b[i] + s * c[i]

        _TRIAD = triad
    return _TRIAD


def measure_triad(footprint_bytes: int, budget_s: float = 0.5) -> dict:
    """STREAM triad ``a = b + s*c`` in float64 over 3 arrays totalling ``footprint_bytes``."""
    n = max(int(footprint_bytes // (3 * 8)), 1024)
    a = np.zeros(n)
    b = np.full(n, 1.0)
    c = np.full(n, 2.0)
    moved = 3.0 * 8 * n
    out = {"footprint_bytes": int(3 * 8 * n)}
    triad = _numba_triad()
    t0 = time.perf_counter()
    triad(a, b, c, 3.0)
    out["numba_first_call_s"] = time.perf_counter() - t0
    r = _median_rate(lambda: triad(a, b, c, 3.0), moved, budget_s)
    out["numba_gbs"] = r["rate"] / 1e9
    out["numba_best_gbs"] = r["best_rate"] / 1e9
    try:
        import torch

        ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)
        r = _median_rate(lambda: torch.add(tb, tc, alpha=3.0, out=ta), moved, budget_s)
        out["torch_gbs"] = r["rate"] / 1e9
        out["torch_best_gbs"] = r["best_rate"] / 1e9
    except ImportError:
        pass
    out["gbs"] = max(v for k, v in out.items() if k.endswith("_gbs") and "best" not in k)
    return out


def measure(pool_bytes: int, quick: bool = False) -> dict:
    """Peak GEMM rate and triad bandwidth; the ceilings of the roofline."""
    t0 = time.perf_counter()
    gemm_budget = 0.4 if quick else 1.5
    triad_budget = 0.3 if quick else 1.0
    gemm = measure_gemm((1024, 2048), gemm_budget)
    llc = last_level_cache_bytes()
    dram_footprint = int(min(max(2 * llc, 256 * 1024 ** 2), 1024 ** 3))
    bandwidth = {"pool": measure_triad(pool_bytes, triad_budget),
                 "dram": measure_triad(dram_footprint, triad_budget)}
    best = max(gemm.items(), key=lambda kv: kv[1]["gflops"])
    peak = best[1]["gflops"]
    bw = bandwidth["pool"]["gbs"]
    return {
        "gemm": gemm,
        "bandwidth": bandwidth,
        "peak_gflops": peak,
        "peak_source": best[0],
        "bandwidth_gbs": bw,
        "bandwidth_source": "triad at the input pool's footprint",
        "dram_bandwidth_gbs": bandwidth["dram"]["gbs"],
        "ridge_flop_per_byte": peak / bw,
        "seconds": time.perf_counter() - t0,
    }
