"""The convolution weight gradient's register tile, emitted as LLVM IR (:func:`wg_tile`).

``dw[k, tap, c] = sum over images n and output pixels (oh, ow) of g[n, oh, ow, k] * x[n, ih, iw, c]``
with channels-last operands: for one tap, the in-channels of a pixel are a contiguous run of x.
A tile holds KB out-channels by V vectors of that run in KB * V accumulator registers; each
pixel loads its V input vectors once and broadcasts its KB grad_output values, one multiply-add
per accumulator. The accumulators are loaded once, summed over a box of pixels (images
[0, n_count), rows [oh0, oh1), columns [ow0, ow1), in that order) and stored once.

Flat C-contiguous arrays, element indexes:

- input vector v of a pixel: ``x[xb + n * xns + oh * xrs + ow * xcs + v * L + lane]``, lanes below
  ``cw - v * L`` only (masked loads: nothing past the run is read);
- grad_output of tile row j: ``g[gb + n * gns + oh * grs + ow * gcs + j * gks]``, rows j >= kc reading
  row kc - 1 (their sums are not stored); ``gks`` is 1 for channels-last grad_output, its plane's
  pixels for channels-first;
- accumulator (j, v): ``acc[ab + j * astep + v * L + lane]``, read and written for j < kc and lanes
  below cw only.

The caller picks the box so that every element read lies inside the input (zeros padding is
never read), and a run may span several taps: a window row of a few channels (kw, c), when
the dilation along the row is 1.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from numba.extending import intrinsic

from .ir import Loops, array_intrinsic, const, internal_function, parameters, source_revision

# Kernels pass this to the intrinsic (see ir.source_revision).
REVISION = source_revision(__file__)


def tile_literal(kb: int, v: int) -> str:
    """The compile-time tile the intrinsic reads: "kKB vV"."""
    return f"k{kb} v{v}"


def _parse(text: str):
    kb, v = text.split()
    return int(kb[1:]), int(v[1:])


class TileArgs(NamedTuple):
    x: Any
    g: Any
    acc: Any
    xb: Any
    xns: Any
    xrs: Any
    xcs: Any
    gb: Any
    gns: Any
    grs: Any
    gcs: Any
    gks: Any
    n_count: Any
    oh0: Any
    oh1: Any
    ow0: Any
    ow1: Any
    ab: Any
    astep: Any
    cw: Any
    kc: Any


_ARRAYS = ("x", "g", "acc")
_LITERALS = ("tile", "lanes", "revision")


class _TileBuilder(Loops):
    def __init__(self, builder, elem, lanes, args, tile):
        super().__init__(builder, elem, lanes)
        self.a = TileArgs(*args)
        self.kb, self.v = tile
        self.declare("fmuladd", "masked.load", "masked.store")

    def emit(self):
        b, a = self.b, self.a
        self.masks = [self.lanes_below(b.sub(a.cw, const(v * self.lanes))) for v in range(self.v)]
        last = b.sub(a.kc, const(1))
        self.rows = [b.mul(b.select(b.icmp_signed("<", const(j), a.kc), const(j), last), a.gks)
                     for j in range(self.kb)]
        slots = [[b.add(b.add(a.ab, b.mul(const(j), a.astep)), const(v * self.lanes)) for v in range(self.v)]
                 for j in range(self.kb)]
        accs = []
        for j, row in enumerate(slots):
            live = self.splat(b.icmp_signed("<", const(j), a.kc))
            accs += [self.load(a.acc, slot, b.and_(mask, live)) for slot, mask in zip(row, self.masks)]

        def image(n, accs):
            xn = b.add(a.xb, b.mul(n, a.xns))
            gn = b.add(a.gb, b.mul(n, a.gns))
            return self.loop(a.oh0, lambda oh: b.icmp_signed("<", oh, a.oh1), const(1), accs,
                             lambda oh, accs: self._row(b.add(xn, b.mul(oh, a.xrs)), b.add(gn, b.mul(oh, a.grs)),
                                                        accs), "oh")[1]

        _, accs = self.loop(const(0), lambda n: b.icmp_signed("<", n, a.n_count), const(1), accs, image, "n")
        for j in range(self.kb):
            with b.if_then(b.icmp_signed("<", const(j), a.kc)):
                for v in range(self.v):
                    self.store(accs[j * self.v + v], a.acc, slots[j][v], self.masks[v])

    def _row(self, xr, gr, accs):
        b, a = self.b, self.a

        def pixel(ow, accs):
            xi = b.add(xr, b.mul(ow, a.xcs))
            gi = b.add(gr, b.mul(ow, a.gcs))
            xv = [self.load(a.x, b.add(xi, const(v * self.lanes)), mask) for v, mask in enumerate(self.masks)]
            for j in range(self.kb):
                gs = self.splat(b.load(self.at(a.g, b.add(gi, self.rows[j])), align=self.align))
                for v in range(self.v):
                    accs[j * self.v + v] = self.fma(gs, xv[v], accs[j * self.v + v])
            return accs

        return self.loop(a.ow0, lambda ow: b.icmp_signed("<", ow, a.ow1), const(1), accs, pixel, "ow")[1]


def _function(module, elem, lanes, shape, fields):
    arg_types = [elem.as_pointer() if n in _ARRAYS else const(0).type for n in fields]
    name = f"fastconv_weight_grad_tile_k{shape[0]}v{shape[1]}_l{lanes}_f{elem.intrinsic_name[1:]}"
    fn, body = internal_function(module, name, arg_types, fields)
    if body is not None:
        _TileBuilder(body, elem, lanes, fn.args, shape).emit()
        body.ret_void()
    return fn


@intrinsic(prefer_literal=True)
def wg_tile(typingctx, x, g, acc, xb, xns, xrs, xcs, gb, gns, grs, gcs, gks, n_count, oh0, oh1, ow0, ow1, ab, astep,
            cw, kc, tile, lanes, revision):
    """``wg_tile(x, g, acc, xb, xns, xrs, xcs, gb, gns, grs, gcs, gks, n_count, oh0, oh1, ow0, ow1, ab, astep, cw, kc,
    TILE, LANES, REVISION)``: one tile's sums over a box of pixels added into its accumulators
    (module docstring)."""
    return array_intrinsic(parameters(locals()), _ARRAYS, _LITERALS, _parse, _function)
