"""Filter an image larger than you want in memory with fastconv.dask, with a progress bar.

    python examples/dask_large_image.py                 # 16k x 16k, chunks of 2048^2
    python examples/dask_large_image.py --size 8192     # smaller
    python examples/dask_large_image.py --zarr out.zarr # store the edges (needs zarr)

The image is generated chunk by chunk (stand-in for ``da.from_zarr`` or
``dask_image.imread``): nothing below ever holds the whole image or the whole output.
It prints the memory peak, which stays a few chunks per worker.
"""

from __future__ import annotations

import argparse
import resource
import time

import dask
import dask.array as da
import numpy as np
from dask.diagnostics import ProgressBar

import fastconv.dask as fd
from fastconv import filters


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=16384)
    p.add_argument("--chunk", type=int, default=2048)
    p.add_argument("--zarr", help="write the gradient magnitude to this zarr store instead of reducing it")
    args = p.parse_args()

    rng = da.random.default_rng(0)
    image = rng.random((args.size, args.size), dtype=np.float32, chunks=args.chunk)
    x = image[None, None]  # (N, C, H, W), as fastconv's conv2d takes it

    # Smooth, then the Sobel gradient magnitude; every step is lazy, chunk by chunk,
    # and each output chunk reads only the halo its kernel needs from its neighbours.
    smooth = fd.conv2d(x, filters.gaussian(5, 1.0), padding="same", padding_mode="reflect")
    gy = fd.conv2d(smooth, filters.sobel(axis=0), padding="same", padding_mode="replicate")
    gx = fd.conv2d(smooth, filters.sobel(axis=1), padding="same", padding_mode="replicate")
    edges = da.sqrt(gx * gx + gy * gy)[0, 0]
    print(f"image {image.shape}, chunks {image.chunksize}; edges {edges.shape}, {edges.npartitions} chunks")

    t0 = time.perf_counter()
    with ProgressBar(), dask.config.set(scheduler="threads"):
        if args.zarr:
            edges.to_zarr(args.zarr, overwrite=True)
        else:
            mean, strong = dask.compute(edges.mean(), (edges > 1.0).sum())
            print(f"mean gradient {float(mean):.4f}, {int(strong)} pixels above 1.0")
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"{args.size ** 2 / seconds / 1e6:.0f} MPixel/s; peak resident memory {peak / 2 ** 20:.0f} MiB "
          f"(the image alone would be {args.size ** 2 * 4 / 2 ** 20:.0f} MiB, one chunk "
          f"{args.chunk ** 2 * 4 / 2 ** 20:.0f} MiB)")


if __name__ == "__main__":
    main()
