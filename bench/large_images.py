"""The ``large_images`` suite: fastconv.dask on images larger than one call should hold.

    python -m bench.large_images --out bench/results/large_images.json --report reports/
    python -m bench.large_images --quick            # 4k x 4k and 128^3, a smoke run
    python -m bench.large_images --part schedulers  # only the scheduler comparison

Three parts, each written to the JSON file and to ``reports/large_images.md``:

- ``filters``: a 3x3 Sobel and a 5x5 Gaussian (``fastconv.filters``) over a 16k x 16k
  float32 image, and a 3x3x3 conv over a 512^3 float32 volume. Each is run by
  fastconv.dask, by dask-image (``ndfilters.correlate``, SciPy per chunk, the same
  chunks, scheduler and worker count; correlate, not convolve, because fastconv's conv
  is a cross-correlation) and by the in-memory fastconv call on the whole array (its
  own threads). The input is a NumPy array in memory wrapped by ``da.from_array``;
  the output is stored (``da.store``) into a preallocated NumPy array, so the time is
  the filter's, not a reduction's. Throughput is input pixels (voxels) per second;
  peak memory is the process's resident set above what it held before the call (the
  input and the output array, both touched beforehand, are not counted).
- ``memory``: the 16k x 16k Gaussian of an image generated chunk by chunk
  (``da.random``) reduced to its sum: the whole output (1 GiB) never exists; the peak
  is reported in chunks.
- ``schedulers``: one representative job (an 8k x 8k generated image, 5x5 Gaussian,
  reduced to its sum) on Dask's threaded scheduler, the processes scheduler and a
  ``distributed.LocalCluster`` (worker processes, and one process with threads), with
  one Numba thread per task (the default) and with every task using all threads.

Every ``compute`` shows Dask's ``ProgressBar`` (``--no-progress`` turns it off; the
distributed runs use ``distributed.progress``). Run it niced on a machine shared with
other jobs and the timings carry their noise: the report says so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from . import environment_plan, prepare_environment

SCHEMA = "fastconv-bench-large-images/1"


def build_parser():
    p = argparse.ArgumentParser(prog="python -m bench.large_images", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="bench/results/large_images.json", help="JSON result file")
    p.add_argument("--report", default="reports/", help="folder for large_images.md ('' for none)")
    p.add_argument("--part", action="append", choices=("filters", "memory", "schedulers"),
                   help="parts to run (repeatable); default all")
    p.add_argument("--size", type=int, default=16384, help="image side (default 16384)")
    p.add_argument("--volume", type=int, default=512, help="volume side (default 512)")
    p.add_argument("--chunk", type=int, default=2048, help="image chunk side (default 2048)")
    p.add_argument("--volume-chunk", type=int, default=128, help="volume chunk side (default 128)")
    p.add_argument("--scheduler-size", type=int, default=8192, help="image side of the scheduler job")
    p.add_argument("--repeat", type=int, default=2, help="timed runs per row (the best is kept; default 2)")
    p.add_argument("--workers", type=int, default=None, help="Dask workers (default: CPUs this process may use)")
    p.add_argument("--quick", action="store_true", help="4k image, 128^3 volume, 2k scheduler job, 1 run")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


# ---- measuring ------------------------------------------------------------------------------


class PeakRSS:
    """Samples the resident set of this process and its children every ``interval`` s."""

    def __init__(self, interval=0.02):
        import psutil

        self.proc, self.interval = psutil.Process(), interval
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _rss(self):
        total = self.proc.memory_info().rss
        for child in self.proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except Exception:  # noqa: BLE001 - a child may exit between listing and reading
                pass
        return total

    def _loop(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._rss())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def extra(self):
        return max(self.peak - self.base, 0)


def _progress(enabled):
    from contextlib import nullcontext

    if not enabled:
        return nullcontext()
    from dask.diagnostics import ProgressBar

    return ProgressBar(minimum=1.0, out=sys.stderr)


def _timed(fn, repeat):
    """Best wall time of ``repeat`` runs of ``fn`` and the largest peak extra memory."""
    best, peak = float("inf"), 0
    for _ in range(repeat):
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
        best, peak = min(best, dt), max(peak, mem.extra)
    return best, peak


# ---- part 1: filters ------------------------------------------------------------------------


def _filter_cases(args):
    import numpy as np

    from fastconv import filters

    rng = np.random.default_rng(0)
    cube = rng.standard_normal((3, 3, 3)).astype(np.float32).reshape(1, 1, 3, 3, 3)
    side, vol = args.size, args.volume
    return [
        ("sobel3x3", 2, (side, side), filters.sobel(axis=0), args.chunk),
        ("gaussian5x5", 2, (side, side), filters.gaussian(5, 1.0), args.chunk),
        ("conv3x3x3", 3, (vol, vol, vol), cube, args.volume_chunk),
    ]


def run_filters(args, workers, progress):
    return [_filter_case(args, workers, progress, *case) for case in _filter_cases(args)]


def _filter_case(args, workers, progress, name, nd, shape, weight, chunk):
    """One row of the filters part: fastconv.dask, dask-image and the in-memory call."""
    import dask.array as da
    import numba
    import numpy as np
    from dask_image import ndfilters

    import fastconv as F
    import fastconv.dask as fd

    pixels = int(np.prod(shape))
    image = np.empty(shape, np.float32)
    rng = np.random.default_rng(1)
    for i in range(0, shape[0], 256):  # fill in slabs: no float64 copy of the whole image
        image[i:i + 256] = rng.random((min(256, shape[0] - i), *shape[1:]), dtype=np.float32)
    out = np.zeros(shape, np.float32)  # touched now, so its pages are not counted as peak
    dimage = da.from_array(image, chunks=chunk)
    conv = F.conv2d if nd == 2 else F.conv3d
    fconv = fd.conv2d if nd == 2 else fd.conv3d
    ours = fconv(dimage[None, None], weight, padding="same", algo="direct")[0, 0]
    theirs = ndfilters.correlate(dimage, weight[0, 0], mode="constant", cval=0.0)
    print(f"[large_images] {name} {'x'.join(map(str, shape))} chunks {chunk}: warm-up", file=sys.stderr)
    small = da.from_array(image[(slice(0, 2 * chunk),) * nd], chunks=chunk)[None, None]
    fconv(small, weight, padding="same", algo="direct").compute()  # JIT: load this chunk shape's kernels

    def store(arr):
        def go():
            with _progress(progress):
                da.store(arr, out, lock=False, scheduler="threads", num_workers=workers)
        return go

    entries = {}
    for label, arr in (("fastconv.dask", ours), ("dask-image", theirs)):
        print(f"[large_images] {name}: {label}", file=sys.stderr)
        seconds, peak = _timed(store(arr), args.repeat)
        entries[label] = {"seconds": seconds, "mpix_s": pixels / seconds / 1e6, "peak_bytes": peak}
    check = out.copy()  # dask-image's result
    store(ours)()
    agree = float(np.max(np.abs(check - out)))
    del check

    def whole():
        numba.set_num_threads(workers)
        conv(image[None, None], weight, padding="same", algo="direct")

    print(f"[large_images] {name}: in-memory fastconv", file=sys.stderr)
    whole()  # JIT warm-up at this shape's kernels
    seconds, peak = _timed(whole, args.repeat)
    entries["fastconv (in memory)"] = {"seconds": seconds, "mpix_s": pixels / seconds / 1e6, "peak_bytes": peak}
    return {"case": name, "shape": list(shape), "chunk": chunk, "chunk_bytes": chunk ** nd * 4,
            "scheduler": f"threads ({workers} workers)", "max_abs_diff_vs_dask_image": agree, "results": entries}


# ---- part 2: memory -------------------------------------------------------------------------


def run_memory(args, workers, progress):
    import dask.array as da
    import numpy as np

    import fastconv.dask as fd
    from fastconv import filters

    side, chunk = args.size, args.chunk
    image = da.random.default_rng(2).random((1, 1, side, side), dtype=np.float32, chunks=(1, 1, chunk, chunk))
    total = fd.conv2d(image, filters.gaussian(5, 1.0), padding="same", algo="direct").sum(dtype=np.float64)

    def go():
        with _progress(progress):
            total.compute(scheduler="threads", num_workers=workers)

    print(f"[large_images] memory: {side}x{side} Gaussian reduced to a scalar", file=sys.stderr)
    seconds, peak = _timed(go, 1)
    chunk_bytes = chunk * chunk * 4
    return {"shape": [side, side], "chunk": chunk, "chunk_bytes": chunk_bytes, "output_bytes": side * side * 4,
            "seconds": seconds, "peak_bytes": peak, "peak_in_chunks": peak / chunk_bytes,
            "peak_per_worker_in_chunks": peak / chunk_bytes / workers, "workers": workers}


# ---- part 3: schedulers ---------------------------------------------------------------------


def _scheduler_job(side, chunk, threads):
    import dask.array as da
    import numpy as np

    import fastconv.dask as fd
    from fastconv import filters

    image = da.random.default_rng(3).random((1, 1, side, side), dtype=np.float32, chunks=(1, 1, chunk, chunk))
    return fd.conv2d(image, filters.gaussian(5, 1.0), padding="same", algo="direct",
                     threads=threads).sum(dtype=np.float64)


def run_schedulers(args, workers, progress):
    import distributed

    side = args.scheduler_size
    chunk = min(args.chunk, side // 2)
    rows = []

    def record(label, fn, threads):
        print(f"[large_images] schedulers: {label}, threads per task {threads or 'all'}", file=sys.stderr)
        fn()  # warm-up (JIT load in each worker)
        seconds, peak = _timed(fn, args.repeat)
        rows.append({"scheduler": label, "threads_per_task": threads or "all", "seconds": seconds,
                     "mpix_s": side * side / seconds / 1e6, "peak_bytes": peak})

    for threads in (1, None):
        job = _scheduler_job(side, chunk, threads)

        def local(kind, job=job):
            def go():
                with _progress(progress):
                    job.compute(scheduler=kind, num_workers=workers)
            return go

        record(f"threads ({workers} workers)", local("threads"), threads)
        record(f"processes ({workers} workers)", local("processes"), threads)
        for n_workers, per in ((workers, 1), (1, workers)):
            with distributed.LocalCluster(n_workers=n_workers, threads_per_worker=per, processes=True,
                                          dashboard_address=None, silence_logs=40) as cluster, \
                    distributed.Client(cluster) as client:
                def go(client=client, job=job):
                    future = client.compute(job)
                    if progress:
                        distributed.progress(future, notebook=False)
                        print(file=sys.stderr)
                    future.result()

                record(f"distributed LocalCluster ({n_workers} process x {per} thread)", go, threads)
    return {"shape": [side, side], "chunk": chunk, "rows": rows}


# ---- report ---------------------------------------------------------------------------------


def _mib(n):
    return f"{n / 2 ** 20:,.0f} MiB"


def markdown(doc) -> str:
    env = doc["machine"]
    lines = ["# Large images: fastconv.dask", "",
             f"Run {doc['started']} with `python -m bench.large_images {' '.join(doc['argv'])}` on "
             f"{env.get('cpu', '?')}, {env.get('cpus', '?')} CPUs, {env.get('memory_gib', '?')} GiB; Dask "
             f"{env.get('dask')}, dask-image {env.get('dask_image')}, SciPy {env.get('scipy')}, Numba "
             f"{env.get('numba')}. **The machine was shared with other agents' jobs while this ran** (load "
             f"average {env.get('load')} at the start), so the times carry that noise; each row is the best of "
             f"{doc['repeat']} runs. float32 throughout. Peak memory is the resident set above what the process "
             "held before the call (input and output arrays excluded).", ""]
    if doc.get("filters"):
        lines += ["## Filters: fastconv.dask vs dask-image vs in-memory fastconv", "",
                  "Same chunks, threaded scheduler, same worker count for both Dask rows; dask-image runs "
                  "`ndfilters.correlate` (SciPy) per chunk via `map_overlap`; fastconv.dask runs `conv2d`/`conv3d` "
                  "with `padding=\"same\"`, `algo=\"direct\"`, one Numba thread per task. The in-memory row is one "
                  "`fastconv.conv2d`/`conv3d` call on the whole array with all threads.", "",
                  "| case | shape | chunk | library | time (s) | MPixel/s | peak memory | vs dask-image |",
                  "|---|---|---|---|---:|---:|---:|---:|"]
        for row in doc["filters"]:
            base = row["results"]["dask-image"]["mpix_s"]
            for label, r in row["results"].items():
                lines.append(f"| {row['case']} | {'x'.join(map(str, row['shape']))} | {row['chunk']} | {label} | "
                             f"{r['seconds']:.2f} | {r['mpix_s']:,.0f} | {_mib(r['peak_bytes'])} | "
                             f"{r['mpix_s'] / base:.2f}x |")
        diffs = [f"{row['case']} {row['max_abs_diff_vs_dask_image']:.1e}" for row in doc["filters"]
                 if row["max_abs_diff_vs_dask_image"] is not None]
        if diffs:
            lines += ["", "Largest difference between fastconv.dask's and dask-image's outputs (zeros padding, "
                      "mode='constant'): " + ", ".join(diffs) + "."]
        lines.append("")
    if doc.get("memory"):
        m = doc["memory"]
        lines += ["## Memory: a 16k x 16k conv reduced to a scalar", "",
                  f"`fd.conv2d(image, gaussian 5x5, padding='same').sum()` over a {m['shape'][0]}x{m['shape'][1]} "
                  f"image generated chunk by chunk (`da.random`, chunks {m['chunk']}^2 = {_mib(m['chunk_bytes'])}), "
                  f"threaded scheduler, {m['workers']} workers: {m['seconds']:.1f} s, peak memory "
                  f"{_mib(m['peak_bytes'])} = {m['peak_in_chunks']:.1f} chunks "
                  f"({m['peak_per_worker_in_chunks']:.1f} chunks per worker), against {_mib(m['output_bytes'])} "
                  "for the whole output.", ""]
    if doc.get("schedulers"):
        s = doc["schedulers"]
        lines += ["## Schedulers", "",
                  f"One job: a {s['shape'][0]}x{s['shape'][1]} generated image (chunks {s['chunk']}^2), 5x5 "
                  "Gaussian, reduced to its sum. Peak memory counts worker processes too.", "",
                  "| scheduler | Numba threads per task | time (s) | MPixel/s | peak memory |",
                  "|---|---|---:|---:|---:|"]
        for r in s["rows"]:
            lines.append(f"| {r['scheduler']} | {r['threads_per_task']} | {r['seconds']:.2f} | {r['mpix_s']:,.0f} | "
                         f"{_mib(r['peak_bytes'])} |")
        lines.append("")
    return "\n".join(lines)


def _machine():
    import platform
    from importlib.metadata import version

    import dask
    import numba
    import psutil
    import scipy

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cpus": len(os.sched_getaffinity(0)),
            "memory_gib": round(psutil.virtual_memory().total / 2 ** 30, 1),
            "load": " ".join(f"{v:.2f}" for v in os.getloadavg()), "dask": dask.__version__,
            "dask_image": version("dask-image"), "scipy": scipy.__version__, "numba": numba.__version__,
            "python": platform.python_version()}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    prepare_environment(environment_plan(), reexec_argv=["-m", "bench.large_images", *argv])
    if args.quick:
        args.size, args.volume, args.scheduler_size, args.repeat = 4096, 128, 2048, 1
        args.chunk, args.volume_chunk = min(args.chunk, 1024), min(args.volume_chunk, 64)
    parts = args.part or ["filters", "memory", "schedulers"]
    workers = args.workers or len(os.sched_getaffinity(0))
    progress = not args.no_progress
    doc = {"schema": SCHEMA, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "argv": argv,
           "repeat": args.repeat, "workers": workers, "machine": _machine()}
    t0 = time.perf_counter()
    if "filters" in parts:
        doc["filters"] = run_filters(args, workers, progress)
    if "memory" in parts:
        doc["memory"] = run_memory(args, workers, progress)
    if "schedulers" in parts:
        doc["schedulers"] = run_schedulers(args, workers, progress)
    doc["seconds"] = time.perf_counter() - t0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    text = markdown(doc)
    if args.report:
        Path(args.report).mkdir(parents=True, exist_ok=True)
        (Path(args.report) / "large_images.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
