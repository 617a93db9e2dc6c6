"""The direct convolution's register tile reading contiguous channels-last input in place,
its geometry compiled in: fma_tile (vector/fma_tile.py) with the reduction as taps outer
and channels inner, like oneDNN's channels-last kernels.

A tile of R rows x S pixels x V output channels sums, for tap (kh, kw) and input channel c,
``x[xbase + i * xrow + kh * xtap + kw * TAPW + p * PIX + c] * w[wbase + ((kh * KW + kw) * C + c) * V + j]``
for kh < kh_n (the taps along H: a runtime count, xtap apart), kw < KW, c < C. C (the
group's input channels), PIX (the input's pixel stride: channels x stride_w), KW and TAPW
(dilation_w x channels) are literals: every broadcast is one load from a tile row's pointer
plus the channel index plus a constant displacement, and the channel loop moves one index.
(fma_tile_strided, which computes ``p * xpix`` at run time and loads each step's offset from
xoff, ran 5-23% slower than the row-planar tile on these layers.) The weights are a block
packed taps outer (fma_tile.pack_weight_block_taps_outer); output, bias and activation as
fma_tile's. The geometry literal also carries the input prefetch distance (INPUT_AHEAD).
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from .fma_tile import TileArgs, _not_unrolled, _TileBuilder, parse_shapes
from .ir import I64, call_selected, const, internal_function, parameters, source_revision
from .prefetch import prefetch_l1

REVISION = source_revision(__file__)
LINE_BYTES = 64
# One-row tiles ask, each step, for one pixel's next line of channels this many lines ahead (each of the first
# LINE pixels' every LINE steps: the pixels past the tile's are the next taps'). 0, 1 and 2 measured within the
# noise of a loaded host (std.c128.56 channels-last, one thread, alternating calls: 8.80 / 8.71 / 8.54 ms).
INPUT_AHEAD = 1
_ARRAYS = ("x", "w", "bias", "out")
_LITERALS = ("shapes", "v", "lanes", "geometry", "revision")
# The tile function's parameters (TileArgs' without xoff, n_steps; xtap and kh_n added).
_NAMES = ("x", "w", "bias", "out", "xbase", "xrow", "xtap", "kh_n", "wbase", "bbase", "obase", "orow", "pstride",
          "kstride", "kvalid", "act")


def geometry_literal(channels: int, pixel: int, kw: int, tap_w: int, ahead: int = INPUT_AHEAD) -> str:
    """The (C, PIX, KW, TAPW, AHEAD) literal of fma_tile_channels_last: "C,PIX,KW,TAPW,AHEAD"."""
    return f"{channels},{pixel},{kw},{tap_w},{ahead}"


@intrinsic(prefer_literal=True)
def fma_tile_channels_last(typingctx, x, w, bias, out, xbase, xrow, xtap, kh_n, wbase, bbase, obase, orow, pstride,
                           kstride, kvalid, act, sel, shapes, v, lanes, geometry, revision):
    """``fma_tile_channels_last(x, w, bias, out, xbase, xrow, xtap, kh_n, wbase, bbase, obase,
    orow, pstride, kstride, kvalid, act, sel, SHAPES, V, LANES, GEOMETRY, REVISION)``: one tile
    of shape ``parse_shapes(SHAPES)[sel]``, GEOMETRY from :func:`geometry_literal`."""
    params = parameters(locals())
    shapes, v, lanes, geometry, revision = (params[name] for name in _LITERALS)
    if not all(isinstance(a, types.StringLiteral) for a in (shapes, geometry)) or not all(
            isinstance(a, types.IntegerLiteral) for a in (v, lanes, revision)):
        return None
    if len({params[name].dtype for name in _ARRAYS}) != 1:
        return None
    tile_shapes, n_lanes = parse_shapes(shapes.literal_value), lanes.literal_value
    n_vec, rem = divmod(v.literal_value, n_lanes)
    geom = tuple(int(n) for n in geometry.literal_value.split(","))
    if rem or not tile_shapes or len(geom) != 5:
        return None
    scalars = [name for name in params if name not in _ARRAYS + _LITERALS]
    sig = types.none(*(types.intp if name in scalars else params[name] for name in params))
    dtype = x.dtype

    def codegen(context, builder, signature, args):
        arg_types, values = dict(zip(params, signature.args)), dict(zip(params, args))
        data = {name: context.make_array(arg_types[name])(context, builder, values[name]).data for name in _ARRAYS}
        ints = {name: context.cast(builder, values[name], arg_types[name], types.intp) for name in scalars}
        call_args = [data[name] if name in data else ints[name] for name in _NAMES]
        call_selected(builder, ints["sel"], tile_shapes, lambda r, s: _tile_function(
            builder.module, context, dtype, n_lanes, n_vec, r, s, geom), call_args)
        return context.get_dummy_value()

    return sig, codegen


def _tile_function(module, context, dtype, lanes, n_vec, rows, s, geom):
    elem = context.get_data_type(dtype)
    ptr = elem.as_pointer()
    arg_types = [ptr if name in _ARRAYS else I64 for name in _NAMES]
    c, pix, kw, tap_w, ahead = geom
    name = f"fastconv_fma_tile_cl_{rows}x{s}_c{c}p{pix}k{kw}t{tap_w}a{ahead}_l{lanes}v{lanes * n_vec}_f{dtype.bitwidth}"
    fn, builder = internal_function(module, name, arg_types, _NAMES)
    if builder is not None:
        a = dict(zip(_NAMES, fn.args))
        tile_args = TileArgs(**{n: a[n] for n in TileArgs._fields[:-2] if n in a}, xoff=None, n_steps=None)
        _ChannelsLastBuilder(builder, elem, lanes, n_vec, tile_args, a["xtap"], a["kh_n"], geom).emit(rows, s)
        builder.ret_void()
    return fn


class _ChannelsLastBuilder(_TileBuilder):
    def __init__(self, builder, elem, lanes, n_vec, args, xtap, kh_n, geom):
        super().__init__(builder, elem, lanes, n_vec, args)
        self.xtap, self.kh_n = xtap, kh_n
        self.channels, self.pixel, self.kw, self.tap_w, self.ahead = geom

    def _reduction_loop(self, rows, s):
        """For kh < kh_n (a loop), kw < KW (unrolled), c < C (a loop, kept rolled): the tile's
        FMAs of step (kh, kw, c), its sums carried through both loops."""
        b, a = self.b, self.args
        row_bases = [self.at(a.x, b.add(a.xbase, b.mul(const(i), a.xrow))) for i in range(rows)]
        zero = ir.Constant(self.vec, None)
        accs = [zero] * (rows * s * self.n_vec)
        c_n, v = self.channels, self.v

        def kh_body(kh, carried):
            xk = b.mul(kh, self.xtap)
            wk = b.add(a.wbase, b.mul(kh, const(self.kw * c_n * v)))
            bases = [self.at(base, xk) for base in row_bases]
            for kw in range(self.kw):
                carried = self._channel_loop(rows, s, [self.at(base, const(kw * self.tap_w)) for base in bases],
                                             self.at(a.w, b.add(wk, const(kw * c_n * v))), carried, kw)
            return carried

        _, accs = self.loop(const(0), lambda kh: b.icmp_signed("<", kh, self.kh_n), const(1), accs, kh_body, "kh")
        n = self.n_vec
        return [[accs[(i * s + p) * n:(i * s + p + 1) * n] for p in range(s)] for i in range(rows)]

    def _channel_loop(self, rows, s, bases, wrow0, carried, kw):
        b = self.b
        entry = b.block
        loop = b.append_basic_block(f"tile.c{kw}.loop")
        exit_ = b.append_basic_block(f"tile.c{kw}.exit")
        b.branch(loop)
        b.position_at_end(loop)
        c = b.phi(I64, "c")
        c.add_incoming(const(0), entry)
        phis = []
        for value in carried:
            phi = b.phi(self.vec)
            phi.add_incoming(value, entry)
            phis.append(phi)
        wrow = self.at(wrow0, b.mul(c, const(self.v)))
        if rows == 1 and self.ahead:
            self._prefetch_input(c, bases[0])
        ws = [self.load(wrow, const(j * self.lanes)) for j in range(self.n_vec)]
        new = []
        for i in range(rows):
            xrow = self.at(bases[i], c)
            for p in range(s):
                xv = self.splat(b.load(self.at(xrow, const(p * self.pixel))))
                at = (i * s + p) * self.n_vec
                new += [self.fma(xv, ws[j], phis[at + j]) for j in range(self.n_vec)]
        c_next = b.add(c, const(1))
        c.add_incoming(c_next, b.block)
        for phi, value in zip(phis, new):
            phi.add_incoming(value, b.block)
        back = b.cbranch(b.icmp_signed("<", c_next, const(self.channels)), loop, exit_)
        _not_unrolled(back, f"{b.function.name}.c{kw}")
        b.position_at_end(exit_)
        return new

    def _prefetch_input(self, c, base):
        """Step c asks for the next line of one pixel's channels: pixel c % LINE's, at channel
        c rounded down to a line plus LINE (one line a step, each pixel's every LINE steps)."""
        b = self.b
        line = LINE_BYTES * 8 // self.bits
        pixel = b.and_(c, const(line - 1))
        ahead = b.add(b.sub(c, pixel), const(line * self.ahead))
        prefetch_l1(b, self.at(base, b.add(b.mul(pixel, const(self.pixel)), ahead)))

