"""Fingerprint the machine code of every CPU kernel a fixed set of calls compiles.

A move-and-merge change (files renamed, helpers moved, builders refactored) must leave
every kernel's machine code as it was. Run this on the commits before and after: it makes
a fixed set of calls through the public API (every CPU algorithm, both layouts, each
float dtype, the pooling and window ops), then finds every compiled Numba dispatcher in
the process and hashes the assembly of each of its overloads, with what names a module
path (mangled symbols, file directives, comments) blanked out. Equal lines mean equal code.

    NUMBA_CACHE_DIR=$(mktemp -d) python tools/kernel_fingerprint.py > after.txt

A fresh NUMBA_CACHE_DIR is needed: kernels loaded from Numba's cache have no assembly text.
Output: one line per (kernel name, signature): ``sha256[:16]  name  signature``, sorted.
"""

from __future__ import annotations

import gc
import hashlib
import re
import sys

import numpy as np

MANGLED = re.compile(r"_ZN[\w$.]+")
NOISE = re.compile(r"^\s*(\.file|\.loc|\.ident|\.section\s+\.note|#|\.Lfunc_end|\.size|\.type|\.globl|\.p2align)"
                   r"|\.Ltmp\d+|\.Lfunc_begin\d+|\.Lfunc_end\d+")
NUMBERED = re.compile(r"\.(LBB|LCPI|Ltmp)\d+_\d+")


def _calls():
    import fastconv as F

    rng = np.random.default_rng(0)

    def arr(*shape, dtype="float32"):
        return rng.standard_normal(shape).astype(dtype)

    for dtype in ("float32", "float64", "float16"):
        x = arr(2, 16, 12, 12, dtype=dtype)
        xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        w3 = arr(32, 16, 3, 3, dtype=dtype)
        b = arr(32, dtype=dtype)
        for cl, xi in ((False, x), (True, xl)):
            kw = dict(channels_last=cl)
            F.conv2d(xi, w3, b, padding=1, algo="direct", **kw)
            F.conv2d(xi, w3, b, stride=2, padding=1, algo="direct", activation="relu", **kw)
            F.conv2d(xi, w3, b, padding=1, algo="im2col", **kw)
            F.conv2d(xi, w3, b, padding=4, dilation=4, algo="taps", **kw)
            F.conv2d(xi, w3, b, padding=1, padding_mode="reflect", **kw)
            F.conv2d(xi, arr(32, 16, 1, 1, dtype=dtype), b, algo="gemm", **kw)
            F.conv2d(xi, arr(32, 16, 1, 1, dtype=dtype), b, algo="direct", **kw)
            F.conv2d(xi, arr(16, 1, 3, 3, dtype=dtype), padding=1, groups=16, algo="depthwise", **kw)
            F.conv2d(xi, arr(16, 1, 3, 3, dtype=dtype), stride=2, padding=1, groups=16, algo="depthwise", **kw)
            F.conv2d(xi, arr(16, 4, 3, 3, dtype=dtype), padding=1, groups=4, **kw)
            F.conv_transpose2d(xi, arr(16, 8, 4, 4, dtype=dtype), stride=2, padding=1, algo="direct", **kw)
            F.conv_transpose2d(xi, arr(16, 32, 4, 4, dtype=dtype), stride=2, padding=1, algo="phases", **kw)
            F.conv_transpose2d(xi, arr(16, 3, 4, 4, dtype=dtype), stride=2, padding=1, **kw)
            F.conv_transpose2d(xi, arr(16, 8, 2, 2, dtype=dtype), stride=2, **kw)
            F.separable_conv2d(xi, arr(16, 1, 3, 3, dtype=dtype), arr(32, 16, 1, 1, dtype=dtype), padding=1, **kw)
            F.max_pool2d(xi, 3, 2, 1, return_indices=True, **kw)
            F.avg_pool2d(xi, 3, 2, 1, count_include_pad=False, **kw)
            F.lp_pool2d(xi, 2, 2, **kw)
            F.adaptive_avg_pool2d(xi, 5, **kw)
            F.adaptive_max_pool2d(xi, 5, return_indices=True, **kw)
            F.global_avg_pool(xi, **kw)
        F.conv1d(arr(2, 8, 30, dtype=dtype), arr(16, 8, 5, dtype=dtype), padding=2, dilation=2)
        F.conv3d(arr(1, 4, 6, 6, 6, dtype=dtype), arr(8, 4, 3, 3, 3, dtype=dtype), padding=1)
        F.max_pool3d(arr(1, 4, 6, 6, 6, dtype=dtype), 2)
        cols = F.unfold(x, 3, padding=1)
        F.fold(cols, (12, 12), 3, padding=1)
        y, idx = F.max_pool2d(x, 2, return_indices=True)
        F.max_unpool2d(y, idx, 2)
    F.max_pool2d(rng.integers(-50, 50, (1, 4, 8, 8)).astype(np.int32), 2)
    F.fractional_max_pool2d(arr(1, 4, 9, 9), 2, output_size=(4, 4), _random_samples=np.full((1, 4, 2), 0.5))


def _normalised(asm: str) -> str:
    lines = []
    for line in asm.splitlines():
        if NOISE.match(line):
            continue
        line = MANGLED.sub("SYM", line)
        line = NUMBERED.sub(".L", line)
        lines.append(line.split("#")[0].rstrip())
    return "\n".join(line for line in lines if line)


def fingerprints() -> list[str]:
    from numba.core.registry import CPUDispatcher

    _calls()
    rows = []
    for obj in gc.get_objects():
        if not isinstance(obj, CPUDispatcher):
            continue
        module = getattr(obj.py_func, "__module__", "") or ""
        if not module.startswith("fastconv"):
            continue
        for sig, cres in obj.overloads.items():
            try:
                asm = cres.library.get_asm_str()
            except Exception as exc:  # loaded from Numba's cache: no assembly
                sys.exit(f"{obj.py_func.__qualname__}: no assembly ({exc}); use a fresh NUMBA_CACHE_DIR")
            digest = hashlib.sha256(_normalised(asm).encode()).hexdigest()[:16]
            rows.append(f"{digest}  {obj.py_func.__qualname__}  {sig}")
    return sorted(set(rows))


if __name__ == "__main__":
    print("\n".join(fingerprints()))
