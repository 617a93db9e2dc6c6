"""The channels-last depthwise row, emitted as LLVM IR: one run of interior output
pixels of one output row, for a range of channels, in vectors of L channels.

Why IR: with the channel loop innermost in Python code, each tap's input and weight
stream is its own pointer, they outnumber the registers and spill, and Numba keeps
LLVM's SLP vectorizer off. Here the loops are turned around: for each vector of L
channels the window's weights are loaded once into registers (one vector per tap),
then the row's pixels are swept in tiles of P: the tile loads each input column it
needs once per window row (neighbouring pixels share columns at stride 1) and
adds it with ``llvm.fmuladd`` into the accumulators of every pixel that uses it, in
each pixel's tap order (kd, kh, kw): the same sums as the scalar path, bias first.
Bias and the activation (clamp to [lo, hi], NaN kept) are applied in registers
and each pixel's vector is stored once. Pixels left over go through tiles of P/2,
..., 1; the last channel vector of a range that is not a multiple of L uses masked
loads and stores (lanes past the range are neither read nor written).

With ``pixels_outer`` (window_literal) the two loops trade places: each tile of pixels runs
every channel vector, loading that vector's weights from memory (L1) for the tile, so the
row's input is read in contiguous runs of whole pixels rather than one vector's lanes C
apart per pass; the sums are the same.

Clipped windows (output pixels near the zeros-padded borders): only window depths and rows
kd0 <= kd < kd1, kh0 <= kh < kh1 are read (a branch per window row, same for every channel
vector), and in the single-pixel variant (window_literal(columns=True)) only columns
kw0 <= kw < kw1; the caller passes the ranges inside the input, so indices of skipped taps,
which may lie outside the arrays, are never loaded.

Addresses (flat C-contiguous arrays, C channels, mult 1): pixel p, tap (kd, kh, kw),
channel c reads ``x[xb + kd*dstep + kh*hstep + (p*SW + kw*DW)*C + c]`` and
``w[((kd*KH + kh)*KW + kw)*C + c]`` (weights (taps, C)), adds ``bias[c]`` and
writes ``out[ob + p*C + c]``, for p < npix and c0 <= c < c1 <= C. Every load and
store is of lanes c < c1 of taps inside the input (the caller's tap ranges), so nothing
reads past an array, even when the last channel is an array's last element.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from numba.core import types
from numba.extending import intrinsic

from .ir import I64, Loops, const, internal_function, parameters, source_revision

# Kernels pass this to dw_row (see source_revision).
REVISION = source_revision(__file__)


def window_literal(kd: int, kh: int, kw: int, sw: int, dw: int, pixels: int, columns: bool = False,
                   pixels_outer: bool = False) -> str:
    """The compile-time shape dw_row reads: "KDxKHxKW sSW dDW pP cCOLUMNS" (columns: the
    window's columns are clipped to [kw0, kw1) too, for single border pixels), and " o1" when
    the row's tiles are the outer loop and its channel vectors the inner one."""
    return f"{kd}x{kh}x{kw} s{sw} d{dw} p{pixels} c{int(columns)}" + (" o1" if pixels_outer else "")


def _parse(text: str):
    window, s, d, p, c, *order = text.split()
    return (tuple(int(n) for n in window.split("x")), int(s[1:]), int(d[1:]), int(p[1:]), bool(int(c[1:])),
            order == ["o1"])


class RowArgs(NamedTuple):
    """The arguments of a row function (the LLVM function of one window), by name: the
    addresses in the module docstring. dw_row hands its arguments over by these names, and
    the function's parameters are these fields, in this order."""
    x: Any  # arrays (pointers to their first element)
    w: Any
    bias: Any
    out: Any
    xb: Any  # the row's first input and output elements
    ob: Any
    npix: Any
    c0: Any  # the channel range
    c1: Any
    cn: Any  # channels per pixel
    hstep: Any  # input elements from one window row, depth, to the next
    dstep: Any
    kd0: Any  # the window's depths, rows and columns inside the input
    kd1: Any
    kh0: Any
    kh1: Any
    kw0: Any
    kw1: Any
    lo: Any  # the activation's clamp
    hi: Any


_ARRAYS = ("x", "w", "bias", "out")
_LITERALS = ("shape", "lanes", "revision")


@intrinsic(prefer_literal=True)
def dw_row(typingctx, x, w, bias, out, xb, ob, npix, c0, c1, cn, hstep, dstep, kd0, kd1, kh0, kh1, kw0, kw1, lo, hi,
           shape, lanes, revision):
    """``dw_row(x, w, bias, out, xb, ob, npix, c0, c1, C, hstep, dstep, kd0, kd1, kh0, kh1, kw0,
    kw1, lo, hi, SHAPE, LANES, REVISION)``: see the module docstring; the last three are literals
    (window_literal)."""
    params = parameters(locals())
    if not isinstance(shape, types.StringLiteral) or not all(
            isinstance(a, types.IntegerLiteral) for a in (lanes, revision)):
        return None
    if not (x.dtype == w.dtype == bias.dtype == out.dtype == lo == hi):
        return None
    geometry, n_lanes = _parse(shape.literal_value), lanes.literal_value
    ints = [name for name in params if name not in _ARRAYS + _LITERALS + ("lo", "hi")]
    sig = types.none(*(types.intp if name in ints else params[name] for name in params))

    def codegen(context, builder, signature, args):
        arg_types, values = dict(zip(params, signature.args)), dict(zip(params, args))
        arrays = {name: context.make_array(arg_types[name])(context, builder, values[name]) for name in _ARRAYS}
        scalars = {name: context.cast(builder, values[name], arg_types[name], types.intp) for name in ints}
        fn = _row_function(builder.module, context, x.dtype, n_lanes, geometry)
        row_args = RowArgs(**{name: a.data for name, a in arrays.items()}, **scalars, lo=values["lo"],
                           hi=values["hi"])
        builder.call(fn, list(row_args))
        return context.get_dummy_value()

    return sig, codegen


def _row_function(module, context, dtype, lanes, geometry):
    (kd_n, kh_n, kw_n), sw, dw, pixels, columns, pixels_outer = geometry
    elem = context.get_data_type(dtype)
    ptr = elem.as_pointer()
    arg_types = [ptr if name in _ARRAYS else elem if name in ("lo", "hi") else I64 for name in RowArgs._fields]
    order = "o" if pixels_outer else ""
    name = f"fastconv_dw_row_k{kd_n}x{kh_n}x{kw_n}_s{sw}d{dw}p{pixels}c{int(columns)}{order}_l{lanes}_f{dtype.bitwidth}"
    fn, builder = internal_function(module, name, arg_types, RowArgs._fields)
    if builder is not None:
        _RowBuilder(builder, elem, lanes, RowArgs(*fn.args), geometry).emit()
        builder.ret_void()
    return fn


class _RowBuilder(Loops):
    def __init__(self, builder, elem, lanes, args: RowArgs, geometry):
        super().__init__(builder, elem, lanes)
        self.args = args
        (self.kd_n, self.kh_n, self.kw_n), self.sw, self.dw, self.pixels, self.columns, self.pixels_outer = geometry
        self.bounds = ((args.kd0, args.kd1), (args.kh0, args.kh1), (args.kw0, args.kw1))
        self.declare("fmuladd", "masked.load", "masked.store")

    def emit(self):
        """Channel vectors outer, each sweeping the row's tiles; or (pixels_outer) tiles outer,
        each over every channel vector of its pixels."""
        if self.pixels_outer:
            self._tiles(lambda size, p0: self._channels(lambda c, mask: self._tile(size, p0, c, *self._vector_setup(
                c, mask), mask)))
        else:
            self._channels(self._sweep)

    def _sweep(self, c, mask):
        """The row's tiles for channels c..c+L-1, their weights held in registers."""
        setup = self._vector_setup(c, mask)
        self._tiles(lambda size, p0: self._tile(size, p0, c, *setup, mask))

    def _channels(self, body):
        """for c in c0, c0+L, ... < c1: body(c, None) on a full vector, body(c, mask) on the masked last one."""
        b = self.b
        entry = b.block
        head = b.append_basic_block("channels.head")
        full = b.append_basic_block("channels.full")
        part = b.append_basic_block("channels.part")
        latch = b.append_basic_block("channels.latch")
        exit_ = b.append_basic_block("channels.exit")
        b.branch(head)
        b.position_at_end(head)
        c = b.phi(I64, "c")
        c.add_incoming(self.args.c0, entry)
        b.cbranch(b.icmp_signed("<", c, self.args.c1), full, exit_)
        b.position_at_end(full)
        c_next = b.add(c, const(self.lanes))
        is_full = b.icmp_signed("<=", c_next, self.args.c1)
        body_bb = b.append_basic_block("channels.vector")
        b.cbranch(is_full, body_bb, part)
        b.position_at_end(body_bb)
        body(c, None)
        b.branch(latch)
        b.position_at_end(part)
        body(c, self.lanes_below(b.sub(self.args.c1, c)))
        b.branch(latch)
        b.position_at_end(latch)
        c.add_incoming(c_next, latch)
        b.branch(head)
        b.position_at_end(exit_)

    def _vector_setup(self, c, mask):
        """The window's weights and the bias of channels c..c+L-1, and the clamp's bounds."""
        taps = self.kd_n * self.kh_n * self.kw_n
        weights = [self.load(self.args.w, self.b.add(self.b.mul(const(t), self.args.cn), c), mask) for t in range(taps)]
        bias = self.load(self.args.bias, c, mask)
        return weights, bias, (self.splat(self.args.lo), self.splat(self.args.hi))

    def _tiles(self, body):
        """The row's pixels in tiles of P, then P/2, ..., 1: body(size, p0) for each tile."""
        p0 = const(0)
        size = self.pixels
        while size >= 1:
            p0 = self._tile_loop(size, p0, body)
            size //= 2

    def _tile_loop(self, size, start, body):
        """while p0 + size <= npix: body(size, p0). Returns p0 after the loop."""
        b = self.b
        entry = b.block
        head = b.append_basic_block(f"tile{size}.head")
        body_bb = b.append_basic_block(f"tile{size}.body")
        exit_ = b.append_basic_block(f"tile{size}.exit")
        b.branch(head)
        b.position_at_end(head)
        p0 = b.phi(I64, f"p{size}")
        p0.add_incoming(start, entry)
        b.cbranch(b.icmp_signed("<=", b.add(p0, const(size)), self.args.npix), body_bb, exit_)
        b.position_at_end(body_bb)
        body(size, p0)
        p0.add_incoming(b.add(p0, const(size)), b.block)
        b.branch(head)
        b.position_at_end(exit_)
        return p0

    def _tile(self, size, p0, c, weights, bias, clamp, mask):
        b = self.b
        xp = b.add(b.add(self.args.xb, b.mul(b.mul(p0, const(self.sw)), self.args.cn)), c)
        accs = [bias] * size
        columns = sorted({p * self.sw + k * self.dw for p in range(size) for k in range(self.kw_n)})
        for kd in range(self.kd_n):
            for kh in range(self.kh_n):
                def window_row(accs, kd=kd, kh=kh):
                    row = b.add(xp, b.add(b.mul(const(kd), self.args.dstep), b.mul(const(kh), self.args.hstep)))
                    for col in columns:
                        users = [(p, k) for p in range(size) for k in range(self.kw_n)
                                 if p * self.sw + k * self.dw == col]
                        if self.columns:  # one pixel: each column is one tap, skipped when clipped
                            accs = self.when(self._inside(2, users[0][1]), accs,
                                              lambda a, row=row, col=col, kd=kd, kh=kh, k=users[0][1]: self._taps(
                                                  a, row, col, [(0, k)], weights, kd, kh, mask))
                        else:
                            accs = self._taps(accs, row, col, users, weights, kd, kh, mask)
                    return accs

                inside = b.and_(self._inside(0, kd), self._inside(1, kh))
                accs = self.when(inside, accs, window_row)
        lo, hi = clamp
        op = b.add(b.add(self.args.ob, b.mul(p0, self.args.cn)), c)
        for p, acc in enumerate(accs):
            v = b.select(b.fcmp_ordered("<", acc, lo), lo, acc)
            v = b.select(b.fcmp_ordered(">", v, hi), hi, v)
            self.store(v, self.args.out, b.add(op, b.mul(const(p), self.args.cn)), mask)

    def _taps(self, accs, row, col, users, weights, kd, kh, mask):
        """Input column col of a window row, into the accumulators of its users (pixel, tap column)."""
        b = self.b
        accs = list(accs)
        xv = self.load(self.args.x, b.add(row, b.mul(const(col), self.args.cn)), mask)
        for p, k in users:
            wv = weights[(kd * self.kh_n + kh) * self.kw_n + k]
            accs[p] = self.fma(xv, wv, accs[p])
        return accs

    def _inside(self, axis, k):
        """lo <= k < hi for the clipped window range of axis (0: depth, 1: height, 2: width)."""
        b = self.b
        lo, hi = self.bounds[axis]
        return b.and_(b.icmp_signed("<=", lo, const(k)), b.icmp_signed(">", hi, const(k)))
