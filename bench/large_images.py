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
  own threads). All with ``algo="auto"``: fastconv.dask runs a single-channel 2-D
  filter on the depthwise kernel over row bands (``fastconv/dask/conv.py``), the 3-D
  conv and the in-memory calls on the direct kernel. The input is a NumPy array in
  memory wrapped by ``da.from_array``; the output is stored (``da.store``) into a
  preallocated NumPy array, so the time is the filter's, not a reduction's. Throughput
  is input pixels (voxels) per second; peak memory is the resident set above what the
  process held before the call (the input and the output array, both touched
  beforehand, are not counted). Each row runs in a fresh process.
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
    p.add_argument("--rounds", type=int, default=2,
                   help="filters: rounds of one fresh process per library, alternating (best kept; default 2)")
    p.add_argument("--workers", type=int, default=None, help="Dask workers (default: CPUs this process may use)")
    p.add_argument("--quick", action="store_true", help="4k image, 128^3 volume, 2k scheduler job, 1 run")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--row", help=argparse.SUPPRESS)  # internal: one row, in this process, JSON on stdout
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


# ---- rows: each measured in its own process --------------------------------------------------
#
# A process's resident set keeps what its allocator holds after earlier work (glibc serves
# a freed 16 MiB block again from its heap rather than the system), so each row runs in a
# fresh process (``--row``): its peak is its own, and no row inherits another's warm caches.

LIBRARIES = ("fastconv.dask", "dask-image", "fastconv (in memory)")


def _filter_cases(args):
    import numpy as np

    from fastconv import filters

    rng = np.random.default_rng(0)
    cube = rng.standard_normal((3, 3, 3)).astype(np.float32).reshape(1, 1, 3, 3, 3)
    side, vol = args.size, args.volume
    return {
        "sobel3x3": (2, (side, side), filters.sobel(axis=0), args.chunk),
        "gaussian5x5": (2, (side, side), filters.gaussian(5, 1.0), args.chunk),
        "conv3x3x3": (3, (vol, vol, vol), cube, args.volume_chunk),
    }


def _image(shape):
    import numpy as np

    image = np.empty(shape, np.float32)
    rng = np.random.default_rng(1)
    for i in range(0, shape[0], 256):  # in slabs: no float64 copy of the whole image
        image[i:i + 256] = rng.random((min(256, shape[0] - i), *shape[1:]), dtype=np.float32)
    return image


def filter_row(args, workers, progress, case, library):
    """One (case, library) row of the filters part, in this process."""
    import dask.array as da
    import numba
    import numpy as np

    import fastconv as F
    import fastconv.dask as fd

    nd, shape, weight, chunk = _filter_cases(args)[case]
    pixels = int(np.prod(shape))
    image = _image(shape)
    out = np.full(shape, 0, np.float32)  # every page touched now: not counted in the peak

    if library == "fastconv (in memory)":
        conv = F.conv2d if nd == 2 else F.conv3d
        numba.set_num_threads(workers)

        def run():
            conv(image[None, None], weight, padding="same")

        print(f"[large_images] {case}: in-memory fastconv, warm-up", file=sys.stderr)
        run()
    else:
        dimage = da.from_array(image, chunks=chunk)
        if library == "fastconv.dask":
            fconv = fd.conv2d if nd == 2 else fd.conv3d
            result = fconv(dimage[None, None], weight, padding="same")[0, 0]
            small = da.from_array(image[(slice(0, 2 * chunk),) * nd], chunks=chunk)[None, None]
            print(f"[large_images] {case}: fastconv.dask, warm-up (JIT)", file=sys.stderr)
            fconv(small, weight, padding="same").compute()
        else:
            from dask_image import ndfilters

            # correlate, not convolve: fastconv's conv is a cross-correlation
            result = ndfilters.correlate(dimage, weight[0, 0], mode="constant", cval=0.0)

        def run():
            with _progress(progress):
                da.store(result, out, lock=False, scheduler="threads", num_workers=workers)

    print(f"[large_images] {case}: {library}", file=sys.stderr)
    seconds, peak = _timed(run, args.repeat)
    return {"seconds": seconds, "mpix_s": pixels / seconds / 1e6, "peak_bytes": peak}


def _agreement(case_args):
    """Largest difference between fastconv.dask and dask-image on a 1024^nd crop of each case."""
    import dask.array as da
    import numpy as np
    from dask_image import ndfilters

    import fastconv.dask as fd

    diffs = {}
    for case, (nd, shape, weight, chunk) in case_args.items():
        crop = tuple(min(s, 1024 if nd == 2 else 128) for s in shape)
        image = da.from_array(_image(crop), chunks=min(chunk, crop[0] // 2))
        fconv = fd.conv2d if nd == 2 else fd.conv3d
        ours = fconv(image[None, None], weight, padding="same")[0, 0].compute()
        theirs = ndfilters.correlate(image, weight[0, 0], mode="constant", cval=0.0).compute()
        diffs[case] = float(np.max(np.abs(ours - theirs)))
    return diffs


def memory_row(args, workers, progress, layout):
    """The 16k x 16k Gaussian of a generated image, reduced to its sum; ``layout`` "square"
    (chunks of --chunk^2) or "rows" (full-width strips of the same number of bytes)."""
    import dask.array as da
    import numpy as np

    import fastconv.dask as fd
    from fastconv import filters

    side = args.size
    chunk = (args.chunk, args.chunk) if layout == "square" else (max(args.chunk ** 2 // side, 1), side)
    image = da.random.default_rng(2).random((1, 1, side, side), dtype=np.float32, chunks=(1, 1, *chunk))
    total = fd.conv2d(image, filters.gaussian(5, 1.0), padding="same").sum(dtype=np.float64)
    fd.conv2d(image[:, :, :2 * chunk[0], :2 * chunk[1]], filters.gaussian(5, 1.0),
              padding="same").sum().compute()  # JIT, before the baseline

    def go():
        with _progress(progress):
            total.compute(scheduler="threads", num_workers=workers)

    print(f"[large_images] memory: {side}x{side} Gaussian reduced to a scalar", file=sys.stderr)
    seconds, peak = _timed(go, 1)
    chunk_bytes = chunk[0] * chunk[1] * 4
    return {"shape": [side, side], "chunk": list(chunk), "layout": layout, "chunk_bytes": chunk_bytes,
            "output_bytes": side * side * 4,
            "seconds": seconds, "peak_bytes": peak, "peak_in_chunks": peak / chunk_bytes,
            "peak_per_worker_in_chunks": peak / chunk_bytes / workers, "workers": workers}


SCHEDULERS = ("threads", "processes", "distributed-processes", "distributed-threads")


def scheduler_row(args, workers, progress, kind, threads):
    """The scheduler job (generated image, 5x5 Gaussian, sum) on one scheduler."""
    import dask.array as da
    import numpy as np

    import fastconv.dask as fd
    from fastconv import filters

    side = args.scheduler_size
    chunk = min(args.chunk, side // 2)
    image = da.random.default_rng(3).random((1, 1, side, side), dtype=np.float32, chunks=(1, 1, chunk, chunk))
    job = fd.conv2d(image, filters.gaussian(5, 1.0), padding="same", threads=threads).sum(dtype=np.float64)
    cluster = client = None
    if kind.startswith("distributed"):
        import distributed

        n_workers, per = (workers, 1) if kind == "distributed-processes" else (1, workers)
        cluster = distributed.LocalCluster(n_workers=n_workers, threads_per_worker=per, processes=True,
                                           dashboard_address=None, silence_logs=40)
        client = distributed.Client(cluster)
        label = f"distributed LocalCluster ({n_workers} process x {per} thread)"

        def go():
            future = client.compute(job)
            if progress:
                distributed.progress(future, notebook=False)
                print(file=sys.stderr)
            future.result()
    else:
        label = f"{kind} ({workers} workers)"

        def go():
            with _progress(progress):
                job.compute(scheduler=kind, num_workers=workers)

    print(f"[large_images] schedulers: {label}, threads per task {threads or 'all'}", file=sys.stderr)
    try:
        go()  # warm-up: loads the kernels in every worker
        seconds, peak = _timed(go, args.repeat)
    finally:
        if client is not None:
            client.close()
            cluster.close()
    return {"scheduler": label, "threads_per_task": threads or "all", "seconds": seconds,
            "mpix_s": side * side / seconds / 1e6, "peak_bytes": peak}


def _in_process(argv, row):
    """Run ``row`` (a --row spec) in a fresh process with the same arguments; its JSON."""
    import subprocess

    cmd = [sys.executable, "-m", "bench.large_images", *argv, "--row", row]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _row(args, workers, progress):
    kind, _, rest = args.row.partition(":")
    if kind == "filters":
        case, _, library = rest.partition(":")
        return filter_row(args, workers, progress, case, library)
    if kind == "memory":
        return memory_row(args, workers, progress, rest)
    if kind == "schedulers":
        name, _, threads = rest.partition(":")
        return scheduler_row(args, workers, progress, name, None if threads == "all" else int(threads))
    raise SystemExit(f"--row {args.row!r}: unknown")


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
             f"average {env.get('load')} at the start), so the times carry that noise; each filter row is the "
             f"best of {doc['repeat']} runs in each of {doc.get('rounds', 1)} fresh processes (the libraries "
             f"alternating), the other rows the best of {doc['repeat']} runs. float32 throughout. Peak memory is "
             "the resident set above what the process held before the call (input and output arrays excluded).", ""]
    if doc.get("filters"):
        lines += ["## Filters: fastconv.dask vs dask-image vs in-memory fastconv", "",
                  "Same chunks, threaded scheduler, same worker count for both Dask rows; dask-image runs "
                  "`ndfilters.correlate` (SciPy) per chunk via `map_overlap`; fastconv.dask runs `conv2d`/`conv3d` "
                  "with `padding=\"same\"`, `algo=\"auto\"` (2-D: the depthwise kernel over row bands; 3-D: the "
                  "direct kernel), one Numba thread per task. The in-memory row is one `fastconv.conv2d`/`conv3d` "
                  "call on the whole array with all threads (`algo=\"auto\"`: the direct kernel). Input "
                  "from a NumPy array in memory, output stored into a preallocated one. Each row ran in its own "
                  "process.", "",
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
                      "mode='constant', on a crop of 1024^2 or 128^3): " + ", ".join(diffs) + "."]
        lines.append("")
    if doc.get("memory"):
        m = doc["memory"][0]
        lines += ["## Memory: a 16k x 16k conv reduced to a scalar", "",
                  f"`fd.conv2d(image, gaussian 5x5, padding='same').sum()` over a {m['shape'][0]}x{m['shape'][1]} "
                  f"image generated chunk by chunk (`da.random`), threaded scheduler, {m['workers']} workers; the "
                  f"whole output would be {_mib(m['output_bytes'])}. Peak memory is the resident set above the "
                  "process's before the call.", "",
                  "| chunks | chunk size | time (s) | peak memory | in chunks | per worker, in chunks |",
                  "|---|---:|---:|---:|---:|---:|"]
        for m in doc["memory"]:
            lines.append(f"| {m['chunk'][0]}x{m['chunk'][1]} ({m['layout']}) | {_mib(m['chunk_bytes'])} | "
                         f"{m['seconds']:.1f} | {_mib(m['peak_bytes'])} | {m['peak_in_chunks']:.1f} | "
                         f"{m['peak_per_worker_in_chunks']:.1f} |")
        lines += ["", "A stencil keeps an input chunk until the chunks around it are done: Dask's ordering holds "
                  "about two rows of input chunks besides each worker's few (its chunk, the bands, the output), so "
                  "the peak grows with the chunks per row, not with the image's height; full-width row chunks "
                  "hold the fewest.", ""]
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
        args.size, args.volume, args.scheduler_size, args.repeat, args.rounds = 4096, 128, 2048, 1, 1
        args.chunk, args.volume_chunk = min(args.chunk, 1024), min(args.volume_chunk, 64)
    parts = args.part or ["filters", "memory", "schedulers"]
    workers = args.workers or len(os.sched_getaffinity(0))
    progress = not args.no_progress
    if args.row:
        print(json.dumps(_row(args, workers, progress)))
        return 0
    doc = {"schema": SCHEMA, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "argv": argv,
           "repeat": args.repeat, "rounds": args.rounds, "workers": workers, "machine": _machine()}
    t0 = time.perf_counter()
    base = [a for a in argv if a != "--quick"] + (["--quick"] if args.quick else [])
    if "filters" in parts:
        cases = _filter_cases(args)
        diffs = _agreement(cases)
        doc["filters"] = []
        for case, (nd, shape, _, chunk) in cases.items():
            results = {}
            for _ in range(args.rounds):  # libraries alternate, so a busy spell hits each alike
                for lib in LIBRARIES:
                    r = _in_process(base, f"filters:{case}:{lib}")
                    old = results.get(lib)
                    if old is None or r["seconds"] < old["seconds"]:
                        r["peak_bytes"] = max(r["peak_bytes"], old["peak_bytes"] if old else 0)
                        results[lib] = r
                    else:
                        old["peak_bytes"] = max(r["peak_bytes"], old["peak_bytes"])
            doc["filters"].append({"case": case, "shape": list(shape), "chunk": chunk, "chunk_bytes": chunk ** nd * 4,
                                   "scheduler": f"threads ({workers} workers)",
                                   "max_abs_diff_vs_dask_image": diffs[case], "results": results})
    if "memory" in parts:
        doc["memory"] = [_in_process(base, f"memory:{layout}") for layout in ("square", "rows")]
    if "schedulers" in parts:
        side = args.scheduler_size
        doc["schedulers"] = {"shape": [side, side], "chunk": min(args.chunk, side // 2),
                             "rows": [_in_process(base, f"schedulers:{kind}:{threads}")
                                      for threads in ("1", "all") for kind in SCHEDULERS]}
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
