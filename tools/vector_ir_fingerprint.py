#!/usr/bin/env python
"""A hash of the LLVM IR that fastconv/cpu/vector/ emits, per variant the kernels compile.

The register tiles (fma_tile, fma_tile_strided, pack_weight_block) and the depthwise row
(dw_row) are Numba intrinsics whose IR Numba's cache cannot see. This tool calls each
intrinsic's typing and code generation directly, as Numba does inside a kernel, into a
module of its own (no Numba compile, a few seconds), and prints the sha256 of the module's
text: the glue emitted at the call site and every function it defines. Equal text means
equal machine code, so a change to the builders that is meant to move code, not change
it, is proved by an unchanged fingerprint.

Variants: float32 and float64, vector registers of 16, 32 and 64 bytes (16 registers,
16, and 32: SSE, AVX2, AVX-512), the tile shapes the direct, 1x1 and fused separable
planners choose on each (tiled.tile_shape, pointwise.strided_shape) for groups of 1 to
64 output channels, plain and strided; the weight packer for each (V, lanes); the
depthwise row for the windows of the test and benchmark layers (2-D and 3-D, strides 1
and 2, dilation 2, short and long windows) as row tiles (channel vectors outer or inner) and as
clipped single pixels.

    python tools/vector_ir_fingerprint.py            # one line per variant, then the total
    python tools/vector_ir_fingerprint.py --check    # compare with tools/vector_ir_fingerprints.txt
    python tools/vector_ir_fingerprint.py --write    # record the current fingerprints there

The recorded hashes hold for one llvmlite and Numba version (their IR printing and
Numba's array structs are part of the text); after upgrading either, --write on the
unchanged code first.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the fastconv of this checkout, not an installed one
RECORD = Path(__file__).with_name("vector_ir_fingerprints.txt")
WIDTHS = ((16, 16), (32, 16), (64, 32))  # (vector bytes, registers)
DTYPES = ("float32", "float64")
GROUP_CHANNELS = (1, 2, 3, 4, 8, 16, 17, 32, 64)
# (KD, KH, KW, stride, dilation): depthwise and fused separable windows of the tests and benchmarks
WINDOWS = ((1, 3, 3, 1, 1), (1, 3, 3, 2, 1), (1, 3, 3, 1, 2), (1, 5, 5, 1, 1), (1, 5, 5, 2, 1), (1, 7, 7, 1, 1),
           (1, 1, 1, 1, 1), (1, 1, 3, 1, 1), (1, 3, 1, 1, 1), (3, 3, 3, 1, 1), (2, 3, 3, 2, 2))


def module_text(intrinsic, arg_types) -> str:
    """The IR of one call of ``intrinsic`` with these Numba argument types, in a module of its own."""
    from llvmlite import ir
    from numba.core.registry import cpu_target

    context, typingctx = cpu_target.target_context, cpu_target.typing_context
    sig, codegen = intrinsic._defn(typingctx, *arg_types)
    module = ir.Module(name="fingerprint")
    caller = ir.Function(module, ir.FunctionType(ir.VoidType(), [context.get_value_type(t) for t in sig.args]),
                         "caller")
    builder = ir.IRBuilder(caller.append_basic_block("entry"))
    codegen(context, builder, sig, list(caller.args))
    builder.ret_void()
    return str(module)


@contextmanager
def vector_width(vector_bytes: int, registers: int):
    """The planners' view of the machine set to these vector registers."""
    from fastconv.cpu import _jit
    from fastconv.cpu.conv.direct import pointwise, tiled

    width = _jit.Simd(vector_bytes, registers)
    with mock.patch.object(tiled, "simd", lambda: width), mock.patch.object(pointwise, "simd", lambda: width):
        yield


def tile_variants():
    from numba.core import types

    from fastconv.cpu.conv.direct.pointwise import strided_shape
    from fastconv.cpu.conv.direct.tiled import tile_shape
    from fastconv.cpu.vector import fma_tile as tile

    shapes = {}
    for vector_bytes, registers in WIDTHS:
        with vector_width(vector_bytes, registers):
            for dtype in DTYPES:
                for k in GROUP_CHANNELS:
                    plain = tile_shape(k, dtype)
                    shapes[plain, False] = None
                    shapes[strided_shape(plain), True] = None
    intp, literal = types.intp, types.literal
    for shape, strided in shapes:
        dt = getattr(types, shape.dtype)
        flat, ints = types.Array(dt, 1, "C"), types.Array(types.int64, 1, "C")
        arrays = (flat, flat, ints, flat, flat)
        scalars = (intp,) * (12 if strided else 11)
        consts = (literal(tile.shapes_literal(shape.shapes)), literal(shape.v), literal(shape.lanes),
                  literal(tile.REVISION))
        name = "fma_tile_strided" if strided else "fma_tile"
        yield f"{name} {shape.dtype} v{shape.v} l{shape.lanes} {tile.shapes_literal(shape.shapes)}", \
            getattr(tile, name), arrays + scalars + consts
    packs = sorted({(shape.dtype, shape.v, shape.lanes) for shape, _ in shapes})
    for dtype, v, lanes in packs:
        dt = getattr(types, dtype)
        yield f"pack_weight_block {dtype} v{v} l{lanes}", tile.pack_weight_block, (
            types.Array(dt, 3, "C", readonly=True), intp, intp, types.Array(dt, 1, "C"), literal(v), literal(lanes),
            literal(tile.REVISION))


def row_variants():
    from numba.core import types

    from fastconv.cpu.vector import depthwise_row as row

    for vector_bytes, _ in WIDTHS:
        for dtype in DTYPES:
            dt = getattr(types, dtype)
            lanes = vector_bytes // (4 if dtype == "float32" else 8)
            flat = types.Array(dt, 1, "C")
            for kd, kh, kw, sw, dw in WINDOWS:
                for pixels, columns, outer in ((8, False, False), (2, False, False), (1, True, False),
                                               (8, False, True), (2, False, True)):
                    shape = row.window_literal(kd, kh, kw, sw, dw, pixels, columns=columns, pixels_outer=outer)
                    arg_types = ((flat, types.Array(dt, 1, "C", readonly=True), flat, flat) + (types.intp,) * 14
                                 + (dt, dt, types.literal(shape), types.literal(lanes), types.literal(row.REVISION)))
                    yield f"dw_row {dtype} l{lanes} {shape}", row.dw_row, arg_types


def channels_last_variants():
    """The in-place channels-last tile (conv/direct/in_place.py): float32 on AVX-512, the tile
    shapes of 32 and 64 output channels, geometries of 64 and 128 channels at stride 1 and 2."""
    from numba.core import types

    from fastconv.cpu.conv.direct.tiled import tile_shape
    from fastconv.cpu.vector import channels_last_tile as tile
    from fastconv.cpu.vector.fma_tile import shapes_literal

    flat = types.Array(types.float32, 1, "C")
    with vector_width(64, 32):
        shapes = [tile_shape(k, "float32", channels_last=True) for k in (32, 64)]
    for shape in shapes:
        for c, stride, dilation in ((64, 1, 1), (128, 2, 1), (128, 1, 2)):
            geometry = tile.geometry_literal(c, stride * c, 3, dilation * c)
            consts = tuple(types.literal(a) for a in (shapes_literal(shape.shapes), shape.v, shape.lanes, geometry,
                                                      tile.REVISION))
            name = f"fma_tile_channels_last float32 v{shape.v} l{shape.lanes} {geometry} {shapes_literal(shape.shapes)}"
            yield name, tile.fma_tile_channels_last, (flat,) * 4 + (types.intp,) * 13 + consts


def fingerprints() -> dict:
    return {name: hashlib.sha256(module_text(fn, arg_types).encode()).hexdigest()[:16]
            for name, fn, arg_types in (*tile_variants(), *row_variants(), *channels_last_variants())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help=f"compare with {RECORD.name}; exit 1 on any difference")
    mode.add_argument("--write", action="store_true", help=f"record the fingerprints in {RECORD.name}")
    args = parser.parse_args(argv)
    current = fingerprints()
    lines = [f"{digest} {name}" for name, digest in current.items()]
    total = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
    if args.write:
        RECORD.write_text("\n".join(lines + [f"{total} total"]) + "\n")
        print(f"{len(lines)} variants, total {total}: written to {RECORD}")
        return 0
    if args.check:
        recorded = dict(reversed(line.split(" ", 1)) for line in RECORD.read_text().splitlines())
        recorded.pop("total", None)
        changed = sorted(name for name in current.keys() | recorded.keys() if current.get(name) != recorded.get(name))
        for name in changed:
            print(f"differs: {name}: recorded {recorded.get(name)}, now {current.get(name)}")
        print(f"{len(current)} variants, total {total}: {len(changed)} differ from {RECORD.name}")
        return 1 if changed else 0
    print("\n".join(lines))
    print(f"{total} total ({len(lines)} variants)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
