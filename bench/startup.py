"""What a fresh process pays before its first result: ``import fastconv``, a first call
whose kernels are in Numba's on-disk cache, and a first call that compiles them cold.

Each is timed in a new Python process (this interpreter, this environment), so nothing
the benchmark process has imported or compiled counts. The cold call gets an empty
NUMBA_CACHE_DIR of its own: every kernel it needs is compiled. Medians over a few
processes; the probe layer is ResNet-50's first 3x3 convolution (the direct kernel).

The probes run without PYTHONDONTWRITEBYTECODE (this machine sets it), so the warm-up
probe leaves fastconv's compiled bytecode behind as installing a package does (pip
compiles it); with the variable set, every process compiles fastconv's sources again
(about 40 ms of 17 modules measured here), which is not what a user's first call pays.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

PROBE = "conv2d_mb1_g1ic64oc64_ih56iw56_kh3kw3_ph1w1"

_SCRIPT = """
import json, time
t0 = time.perf_counter()
import fastconv
t1 = time.perf_counter()
import numpy as np
x = np.ones((1, 64, 56, 56), np.float32)
w = np.ones((64, 64, 3, 3), np.float32)
t2 = time.perf_counter()
fastconv.conv2d(x, w, padding=1)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_call_s": t3 - t2}))
"""


def _probe(env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(repeats: int = 3) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    _probe(env)  # fills Numba's cache if this is the first run with it
    warm = [_probe(env) for _ in range(repeats)]
    with tempfile.TemporaryDirectory(prefix="fastconv-cold-cache-") as cold_dir:
        cold = _probe(dict(env, NUMBA_CACHE_DIR=cold_dir))
    return {
        "probe": PROBE,
        "processes": repeats,
        "import_s": statistics.median(r["import_s"] for r in warm),
        "first_call_cached_s": statistics.median(r["first_call_s"] for r in warm),
        "first_call_cold_s": cold["first_call_s"],
    }
