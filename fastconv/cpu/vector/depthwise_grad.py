"""The depthwise weight gradient's register tiles, emitted as LLVM IR: every tap's sum of one
2-D window (KH x KW) in a vector register across a whole output plane, in either layout.

Why: ``dw[k, tap] = sum over output pixels of g[k, o] * x[k, o * stride + tap * dilation]``.
Written as Python loops each multiply-add loads and stores its tap's accumulator; here the
accumulators are KH * KW vectors loaded once per plane and stored once after it.

- channels-last (:func:`dw_grad_nhwc`): the vector runs over L channels. For each channel
  vector a strip of the plane's output rows is swept: border pixels one at a time (window columns
  clipped), interior pixels in tiles of P, the rest of them one by one. A tile loads its P grad_output
  vectors once, then each input column of each window row once, and adds it into every tap
  that reads it. The accumulators are loaded and stored once per strip and channel vector.
  Each tap's sum runs over the output pixels in order (oh, ow), lane by lane: the result does
  not depend on how channels are split among tasks.
- channels-first (:func:`dw_grad_nchw`): the vector runs along the output row (L columns,
  stride 1 or 2: two input vectors, their even lanes). Lane i of a tap's vector sums the
  columns ow = ow0 + i of every block and row, in the order (ow0, oh); the caller adds the
  lanes up in a fixed order. Blocks at the row's ends load with lane masks (columns outside
  the input or past the row read nothing).

Window rows outside the input (zeros padding) are skipped, a branch per (row, window row),
so nothing is read outside the arrays. Addresses, flat C-contiguous arrays:

- nhwc: input ``x[xb + ih * in_w * cn + iw * cn + c]``, grad_output ``g[gb + (oh * ow_n + ow) * cn + c]``,
  accumulators ``acc[ab + tap * astep + c]`` for c0 <= c < c1;
- nchw: input ``x[xb + ih * in_w + iw]``, grad_output ``g[gb + oh * ow_n + ow]``, accumulators
  ``acc[ab + tap * L + lane]``;

with ih = oh * sh - ph + kh * dh and iw = ow * SW - pw + kw * DW.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from llvmlite import ir
from numba.extending import intrinsic

from .ir import I32, I64, Loops, array_intrinsic, const, internal_function, parameters, source_revision

# Kernels pass this to the intrinsics (see ir.source_revision).
REVISION = source_revision(__file__)


def grad_literal(kh: int, kw: int, sw: int, dw: int, pixels: int = 1) -> str:
    """The compile-time shape the intrinsics read: "KHxKW sSW dDW pP" (P: nhwc tile pixels)."""
    return f"{kh}x{kw} s{sw} d{dw} p{pixels}"


def _parse(text: str):
    window, s, d, p = text.split()
    kh, kw = (int(n) for n in window.split("x"))
    return kh, kw, int(s[1:]), int(d[1:]), int(p[1:])


class NhwcArgs(NamedTuple):
    x: Any
    g: Any
    acc: Any
    xb: Any  # the input plane's first element
    gb: Any  # grad_output's plane
    ab: Any  # accumulator of tap 0, channel 0
    astep: Any  # accumulator elements from one tap to the next
    c0: Any  # the channel range
    c1: Any
    cn: Any  # channels per pixel
    oh0: Any  # the output rows added
    oh1: Any
    ow_n: Any
    lo: Any  # interior output columns (every window column inside the input)
    hi: Any
    in_h: Any
    in_w: Any
    sh: Any
    ph: Any
    pw: Any
    dh: Any


class NchwArgs(NamedTuple):
    x: Any
    g: Any
    acc: Any
    xb: Any
    gb: Any
    ab: Any
    oh_n: Any
    ow_n: Any
    lo: Any
    hi: Any
    in_h: Any
    in_w: Any
    sh: Any
    ph: Any
    pw: Any
    dh: Any


_ARRAYS = ("x", "g", "acc")
_LITERALS = ("shape", "lanes", "revision")


def _typing(params, kind, builder_class):
    """The intrinsic's signature and code generation (ir.array_intrinsic): the arrays, the
    ints of its argument tuple, then the (shape, lanes, revision) literals."""
    return array_intrinsic(params, _ARRAYS, _LITERALS, _parse,
                           lambda module, elem, lanes, geometry, fields:
                           _function(module, kind, elem, lanes, geometry, fields, builder_class))


def _function(module, kind, elem, lanes, geometry, fields, builder_class):
    kh, kw, sw, dw, pixels = geometry
    ptr = elem.as_pointer()
    arg_types = [ptr if n in _ARRAYS else I64 for n in fields]
    name = f"fastconv_dw_grad_{kind}_k{kh}x{kw}_s{sw}d{dw}p{pixels}_l{lanes}_f{elem.intrinsic_name[1:]}"
    fn, builder = internal_function(module, name, arg_types, fields)
    if builder is not None:
        builder_class(builder, elem, lanes, fn.args, geometry).emit()
        builder.ret_void()
    return fn


class _Builder(Loops):
    """The window geometry and arguments of both layouts' builders."""

    def __init__(self, builder, elem, lanes, args, geometry, arg_class):
        super().__init__(builder, elem, lanes)
        self.a = arg_class(*args)
        self.kh_n, self.kw_n, self.sw, self.dw, self.pixels = geometry
        self.taps = self.kh_n * self.kw_n
        self.declare("fmuladd", "masked.load", "masked.store")

    def inside(self, value, size):
        """0 <= value < size."""
        b = self.b
        return b.and_(b.icmp_signed(">=", value, const(0)), b.icmp_signed("<", value, size))

    def input_rows(self, oh):
        """Per window row kh: (inside the input?, the input row ih)."""
        b, a = self.b, self.a
        ih0 = b.sub(b.mul(oh, a.sh), a.ph)
        rows = []
        for kh in range(self.kh_n):
            ih = b.add(ih0, b.mul(const(kh), a.dh))
            rows.append((self.inside(ih, a.in_h), ih))
        return rows


class _NhwcBuilder(_Builder):
    def __init__(self, builder, elem, lanes, args, geometry):
        super().__init__(builder, elem, lanes, args, geometry, NhwcArgs)

    def emit(self):
        """for c in c0, c0+L, ... < c1: the full vector, or the masked last one."""
        b, a = self.b, self.a

        def vector(c, _):
            full = b.icmp_signed("<=", b.add(c, const(self.lanes)), a.c1)
            self.either(full, [], lambda _: self._channel_vector(c, None),
                        lambda _: self._channel_vector(c, self.lanes_below(b.sub(a.c1, c))))
            return []

        self.loop(a.c0, lambda c: b.icmp_signed("<", c, a.c1), const(self.lanes), [], vector, "channels")

    def _channel_vector(self, c, mask):
        b, a = self.b, self.a
        slots = [b.add(b.add(a.ab, b.mul(const(t), a.astep)), c) for t in range(self.taps)]
        accs = [self.load(a.acc, slot, mask) for slot in slots]
        _, accs = self.loop(a.oh0, lambda oh: b.icmp_signed("<", oh, a.oh1), const(1), accs,
                            lambda oh, accs: self._row(oh, c, accs, mask), "oh")
        for slot, acc in zip(slots, accs):
            self.store(acc, a.acc, slot, mask)
        return []

    def _row(self, oh, c, accs, mask):
        """One output row: left border pixels, interior tiles, right border pixels."""
        b, a = self.b, self.a
        rows = [(ok, b.add(b.add(a.xb, b.mul(b.mul(ih, a.in_w), a.cn)), c)) for ok, ih in self.input_rows(oh)]
        grow = b.add(b.add(a.gb, b.mul(b.mul(oh, a.ow_n), a.cn)), c)

        def less(stop):
            return lambda i: b.icmp_signed("<", i, stop)

        _, accs = self.loop(const(0), less(a.lo), const(1), accs,
                            lambda ow, accs: self._border_pixel(ow, rows, grow, accs, mask), "left")
        p0 = a.lo
        size = self.pixels
        while size >= 1:
            p0, accs = self.loop(p0, lambda p, size=size: b.icmp_signed("<=", b.add(p, const(size)), a.hi),
                                 const(size), accs,
                                 lambda p, accs, size=size: self._tile(p, size, rows, grow, accs, mask), f"tile{size}")
            size = 1 if size > 1 else 0  # P, then 1: less code to compile than every halving
        _, accs = self.loop(a.hi, less(a.ow_n), const(1), accs,
                            lambda ow, accs: self._border_pixel(ow, rows, grow, accs, mask), "right")
        return accs

    def _tile(self, p0, size, rows, grow, accs, mask):
        b, a = self.b, self.a
        gv = [self.load(a.g, b.add(grow, b.mul(b.add(p0, const(p)), a.cn)), mask) for p in range(size)]
        columns = sorted({p * self.sw + k * self.dw for p in range(size) for k in range(self.kw_n)})
        col0 = b.sub(b.mul(p0, const(self.sw)), a.pw)
        for kh, (ok, xrow) in enumerate(rows):
            def window_row(accs, kh=kh, xrow=xrow):
                base = b.add(xrow, b.mul(col0, a.cn))
                for col in columns:
                    xv = self.load(a.x, b.add(base, b.mul(const(col), a.cn)), mask)
                    for p in range(size):
                        for k in range(self.kw_n):
                            if p * self.sw + k * self.dw == col:
                                t = kh * self.kw_n + k
                                accs[t] = self.fma(gv[p], xv, accs[t])
                return accs

            accs = self.when(ok, accs, window_row)
        return accs

    def _border_pixel(self, ow, rows, grow, accs, mask):
        """One output pixel, window columns outside the input skipped."""
        b, a = self.b, self.a
        gv = self.load(a.g, b.add(grow, b.mul(ow, a.cn)), mask)
        iw0 = b.sub(b.mul(ow, const(self.sw)), a.pw)
        cols = [b.add(iw0, const(k * self.dw)) for k in range(self.kw_n)]
        for kh, (ok, xrow) in enumerate(rows):
            def window_row(accs, kh=kh, xrow=xrow):
                for k, iw in enumerate(cols):
                    def tap(accs, k=k, iw=iw):
                        t = kh * self.kw_n + k
                        xv = self.load(a.x, b.add(xrow, b.mul(iw, a.cn)), mask)
                        accs[t] = self.fma(gv, xv, accs[t])
                        return accs

                    accs = self.when(self.inside(iw, a.in_w), accs, tap)
                return accs

            accs = self.when(ok, accs, window_row)
        return accs


class _NchwBuilder(_Builder):
    def __init__(self, builder, elem, lanes, args, geometry):
        super().__init__(builder, elem, lanes, args, geometry, NchwArgs)
        self.lane_ids = [ir.Constant(ir.VectorType(I64, lanes), [m * lanes + i for i in range(lanes)])
                         for m in range(self.sw)]
        # lane i of part m is input element m * L + i of the block, read by output lane (m * L + i) // SW
        self.lane_pixels = [ir.Constant(ir.VectorType(I64, lanes), [(m * lanes + i) // self.sw for i in range(lanes)])
                            for m in range(self.sw)]
        self.pick = ir.Constant(ir.VectorType(I32, lanes), [i * self.sw for i in range(lanes)])

    def emit(self):
        b, a = self.b, self.a
        slots = [b.add(a.ab, const(t * self.lanes)) for t in range(self.taps)]
        accs = [self.load(a.acc, slot) for slot in slots]
        step = const(self.lanes)
        hi_start = b.sub(a.hi, step)

        def block(ow0, accs):
            interior = b.and_(b.icmp_signed(">=", ow0, a.lo), b.icmp_signed("<=", ow0, hi_start))
            return self.either(interior, accs, lambda accs: self._rows(ow0, accs, None),
                               lambda accs: self._rows(ow0, accs, self._masks(ow0)))

        _, accs = self.loop(const(0), lambda ow0: b.icmp_signed("<", ow0, a.ow_n), step, accs, block, "block")
        for slot, acc in zip(slots, accs):
            self.store(acc, a.acc, slot)

    def _masks(self, ow0):
        """(grad_output's mask, per kw the masks of the SW input parts) of a block at a row's end."""
        b, a = self.b, self.a
        g_mask = self.lanes_below(b.sub(a.ow_n, ow0))
        x_masks = []
        for k in range(self.kw_n):
            start = b.add(b.sub(b.mul(ow0, const(self.sw)), a.pw), const(k * self.dw))
            parts = []
            for ids, pixels in zip(self.lane_ids, self.lane_pixels):
                iw = b.add(self.splat(start), ids)
                ok = b.and_(b.icmp_signed(">=", iw, self.splat(const(0))), b.icmp_signed("<", iw, self.splat(a.in_w)))
                parts.append(b.and_(ok, b.icmp_signed("<", b.add(self.splat(ow0), pixels), self.splat(a.ow_n))))
            x_masks.append(parts)
        return g_mask, x_masks

    def _rows(self, ow0, accs, masks):
        b, a = self.b, self.a
        g_mask, x_masks = masks if masks is not None else (None, None)
        if masks is None and self.sw > 1:  # the last part's last element lies past the block's last column
            x_masks = [[None] * (self.sw - 1) + [self.first_lanes(self.lanes - self.sw + 1)]] * self.kw_n
        col0 = b.sub(b.mul(ow0, const(self.sw)), a.pw)

        def row(oh, accs):
            gv = self.load(a.g, b.add(b.add(a.gb, b.mul(oh, a.ow_n)), ow0), g_mask)
            for kh, (ok, ih) in enumerate(self.input_rows(oh)):
                def window_row(accs, kh=kh, ih=ih):
                    xrow = b.add(b.add(a.xb, b.mul(ih, a.in_w)), col0)
                    for k in range(self.kw_n):
                        xv = self._input(b.add(xrow, const(k * self.dw)), x_masks[k] if x_masks else None)
                        t = kh * self.kw_n + k
                        accs[t] = self.fma(gv, xv, accs[t])
                    return accs

                accs = self.when(ok, accs, window_row)
            return accs

        _, accs = self.loop(const(0), lambda oh: b.icmp_signed("<", oh, a.oh_n), const(1), accs, row, "oh")
        return accs

    def _input(self, index, masks):
        """Input elements index + SW * i for the block's lanes i."""
        if self.sw == 1:
            return self.load(self.a.x, index, masks[0] if masks else None)
        parts = [self.load(self.a.x, self.b.add(index, const(m * self.lanes)), masks[m] if masks else None)
                 for m in range(self.sw)]
        return self.b.shuffle_vector(parts[0], parts[1], self.pick)


@intrinsic(prefer_literal=True)
def dw_grad_nhwc(typingctx, x, g, acc, xb, gb, ab, astep, c0, c1, cn, oh0, oh1, ow_n, lo, hi, in_h, in_w, sh, ph, pw,
                 dh, shape, lanes, revision):
    """``dw_grad_nhwc(x, g, acc, xb, gb, ab, astep, c0, c1, cn, oh0, oh1, ow_n, lo, hi, in_h, in_w, sh, ph, pw, dh,
    SHAPE, LANES, REVISION)``: output rows [oh0, oh1) of one channels-last plane added into the accumulators
    (module docstring)."""
    return _typing(parameters(locals()), "nhwc", _NhwcBuilder)


@intrinsic(prefer_literal=True)
def dw_grad_nchw(typingctx, x, g, acc, xb, gb, ab, oh_n, ow_n, lo, hi, in_h, in_w, sh, ph, pw, dh, shape, lanes,
                 revision):
    """``dw_grad_nchw(x, g, acc, xb, gb, ab, oh_n, ow_n, lo, hi, in_h, in_w, sh, ph, pw, dh, SHAPE, LANES,
    REVISION)``: one channels-first plane added into the lane accumulators (module docstring); SW is 1 or 2."""
    return _typing(parameters(locals()), "nchw", _NchwBuilder)
