"""The direct convolution's register tile, emitted as LLVM IR: R output rows x S output
pixels x V output channels, accumulated in R * S * V/L vector registers of L lanes.

Why IR and not Python loops: the tile only runs at the machine's speed when every
accumulator stays in a register and each reduction step is "load V weights, broadcast
one input value per pixel, R * S * V/L fused multiply-adds". From scalar Python code
that is left to LLVM's SLP vectorizer, which Numba switches off by default
(``NUMBA_SLP_VECTORIZE``), which sizes vectors for 256 bits on AVX-512 parts that LLVM
models as preferring them, and which, when on, turned the tile's input loads into
gathers. Emitting the vectors here makes the code independent of those settings:
``<L x float>`` values, ``llvm.fmuladd`` (one FMA where the target has FMA, a multiply
and an add elsewhere; the rounding ``fastmath={"contract"}`` allows), one input pointer
per tile row and step with the pixels at constant offsets from it. With L = 16 floats,
R * S = 14 and V = 32 a step is 2 weight loads, 14 broadcasts and 28 FMAs in 31 of
the 32 zmm registers, without spills, and (unit-stride tiles, strided ones with pixels
less than a line apart) a prefetch of the input lines INPUT_AHEAD steps on.

Layouts the tile assumes (prepared by conv/direct/tiled.py):

- input ``x``, flat: reduction step r (one tap, one input channel) of pixel p in tile
  row i reads ``x[xbase + i * xrow + xoff[r] + p]`` (the W axis is innermost and split
  by stride phase, so a row's S pixels are S consecutive elements for every tap);
- weights ``w``, flat: ``w[wbase + r * V + v]`` (output channels innermost, padded to V);
- bias ``bias[bbase + v]`` (padded the same way);
- output ``out[obase + i * orow + p * pstride + v * kstride]`` for ``v < kvalid``:
  channels-last (``kstride == 1``: vector stores when the block is full) or
  channels-first (``pstride == 1``: rows of 7 or more pixels are transposed in registers
  and each channel's run of pixels stored with one masked vector store); with
  ``ACT_ACCUMULATE`` in ``act`` the tile first adds the values already there.

One intrinsic carries several tile shapes; ``sel`` picks one at run time, so any output
plane is covered by full-speed tiles without padding the output.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from .ir import I64, Loops, Vectors, call_selected, const, internal_function, parameters, source_revision
from .prefetch import prefetch_l1

ACT_NONE, ACT_RELU, ACT_RELU6 = 0, 1, 2  # the codes of layout.ACTIVATION_CODES
# Added to an activation code: the tile adds the output's current values to its sums, before bias and activation
# (a reduction cut into blocks, each tile call after the first adding into the outputs of the ones before).
ACT_ACCUMULATE = 4
ACT_CODE_MASK = 3
TRANSPOSE_MIN = 7  # narrower rows store channels-first through the general path (less code to compile)
# Unit-stride tiles ask for the input lines of the step this many ahead. Without it a step whose input line was not
# in L1 (a new line every kernel width of steps, the weights streaming through L1 in between) stalled the FMAs:
# Ice Lake-SP, one thread, a 1x14 tile over a 128-channel 3x3 layer's packed input: 0.28 ns an FMA, 0.24 with
# lines 4 steps ahead (2: 0.25, 8: 0.24), 0.22 with every read in L1; the direct kernel on 56x56 128->128 and
# 64->64 3x3 layers 0.81-0.94x the time.
INPUT_AHEAD = 4
# Strided tiles whose pixels are less than a line apart do the same (channels-first 1x1 rows, each step a channel a
# plane away: ResNet-50's 256->128 56x56 NCHW 3.55 -> 2.67 ms, one thread); channels-last ones, whose lines serve a
# line of steps, skip it at run time.
LINE_BYTES = 64


def shapes_literal(shapes) -> str:
    """Tile shapes ((R, S), ...) as the string constant fma_tile reads: "1x14 2x7 ..."."""
    return " ".join(f"{r}x{s}" for r, s in shapes)


def parse_shapes(text: str) -> tuple:
    return tuple(tuple(int(n) for n in item.split("x")) for item in text.split())


# Kernels pass this to the fma_tile intrinsics and pack_weight_block (see source_revision).
REVISION = source_revision(__file__)


class TileArgs(NamedTuple):
    """The arguments of a tile function (the LLVM function of one tile shape), by name: the
    layouts in the module docstring. The intrinsics hand theirs over by name, and the
    function's parameters are these fields, in this order (xpix only when strided)."""
    x: Any  # arrays (pointers to their first element)
    w: Any
    xoff: Any
    bias: Any
    out: Any
    n_steps: Any  # reduction steps: the length of xoff
    xbase: Any
    xrow: Any
    wbase: Any
    bbase: Any
    obase: Any
    orow: Any
    pstride: Any
    kstride: Any
    kvalid: Any
    act: Any
    xpix: Any = None  # the input's pixel stride (strided tiles); None: 1, as constant offsets
    woff: Any = None  # step r's weights at w[wbase + woff[r]] (indexed tiles); None: at wbase + r * V

    @staticmethod
    def names(strided: bool, indexed: bool = False) -> tuple:
        return TileArgs._fields[:-2] + ("xpix",) * strided + ("woff",) * indexed


_ARRAYS = ("x", "w", "xoff", "bias", "out")  # the intrinsics' parameters by kind
_INDEX_ARRAYS = ("xoff", "woff")
_LITERALS = ("shapes", "v", "lanes", "revision")


@intrinsic(prefer_literal=True)
def fma_tile(typingctx, x, w, xoff, bias, out, xbase, xrow, wbase, bbase, obase, orow, pstride, kstride, kvalid, act,
             sel, shapes, v, lanes, revision):
    """``fma_tile(x, w, xoff, bias, out, xbase, xrow, wbase, bbase, obase, orow, pstride,
    kstride, kvalid, act, sel, SHAPES, V, LANES, REVISION)``: one tile of shape
    ``parse_shapes(SHAPES)[sel]`` by V channels, in vectors of LANES elements. The last
    four are compile-time constants (literals)."""
    return _tile_intrinsic(parameters(locals()), strided=False)


@intrinsic(prefer_literal=True)
def fma_tile_strided(typingctx, x, w, xoff, bias, out, xbase, xrow, wbase, bbase, obase, orow, pstride, kstride,
                     kvalid, act, xpix, sel, shapes, v, lanes, revision):
    """fma_tile whose pixel p reads ``x[xbase + i * xrow + xoff[r] + p * xpix]``: channels-last
    input read in place by a 1x1 convolution (xpix = channels)."""
    return _tile_intrinsic(parameters(locals()), strided=True)


@intrinsic(prefer_literal=True)
def fma_tile_indexed(typingctx, x, w, xoff, bias, out, xbase, xrow, wbase, bbase, obase, orow, pstride, kstride,
                     kvalid, act, woff, sel, shapes, v, lanes, revision):
    """fma_tile whose step r reads its V weights at ``w[wbase + woff[r]]`` (woff int64, as long
    as xoff): a subset of a packed block's steps, the banded direct kernel's valid taps."""
    return _tile_intrinsic(parameters(locals()), strided=False, indexed=True)


@intrinsic(prefer_literal=True)
def fma_tile_strided_indexed(typingctx, x, w, xoff, bias, out, xbase, xrow, wbase, bbase, obase, orow, pstride,
                             kstride, kvalid, act, xpix, woff, sel, shapes, v, lanes, revision):
    """fma_tile_strided whose step r reads its weights as fma_tile_indexed's: the banded direct
    kernel's valid taps read from channels-last input in place."""
    return _tile_intrinsic(parameters(locals()), strided=True, indexed=True)


@intrinsic(prefer_literal=True)
def fma_tile_strided_indexed_rolled(typingctx, x, w, xoff, bias, out, xbase, xrow, wbase, bbase, obase, orow,
                                    pstride, kstride, kvalid, act, xpix, woff, sel, shapes, v, lanes, revision):
    """fma_tile_strided_indexed whose loop over the steps is never unrolled: LLVM unrolled it
    twice and hoisted both steps' broadcasts ahead of their FMAs, spilling accumulators (a
    9-pixel tile with its data in L1, one thread: 5.6-10 against 5.0 ns a step)."""
    return _tile_intrinsic(parameters(locals()), strided=True, indexed=True, rolled=True)


def _tile_intrinsic(params: dict, strided: bool, indexed: bool = False, rolled: bool = False):
    """Typing and code generation of fma_tile (strided: of fma_tile_strided; indexed: of
    fma_tile_indexed; both: of fma_tile_strided_indexed, rolled: its loop kept rolled), whose
    parameters ``params`` are by name: a switch over the tile shapes, each calling its own
    tile function with the TileArgs of the same names."""
    shapes, v, lanes, revision = (params[name] for name in _LITERALS)
    if not isinstance(shapes, types.StringLiteral) or not all(
            isinstance(a, types.IntegerLiteral) for a in (v, lanes, revision)):
        return None
    arrays_in = _ARRAYS + ("woff",) * indexed
    if indexed and not all(isinstance(params[n], types.Array) and params[n].dtype == types.int64
                           for n in _INDEX_ARRAYS):
        return None
    x, w, _, bias, out = (params[name] for name in _ARRAYS)
    tile_shapes, n_lanes = parse_shapes(shapes.literal_value), lanes.literal_value
    n_vec, rem = divmod(v.literal_value, n_lanes)
    if rem or not tile_shapes or not (x.dtype == w.dtype == bias.dtype == out.dtype):
        return None
    scalars = [name for name in params if name not in arrays_in + _LITERALS]  # the tile's, and sel
    sig = types.none(*(types.intp if name in scalars else params[name] for name in params))

    def codegen(context, builder, signature, args):
        arg_types, values = dict(zip(params, signature.args)), dict(zip(params, args))
        arrays = {name: context.make_array(arg_types[name])(context, builder, values[name]) for name in arrays_in}
        ints = {name: context.cast(builder, values[name], arg_types[name], types.intp) for name in scalars}
        tile_args = TileArgs(**{name: a.data for name, a in arrays.items()}, n_steps=arrays["xoff"].nitems,
                             **{name: ints[name] for name in scalars if name != "sel"})
        call_args = [getattr(tile_args, name) for name in TileArgs.names(strided, indexed)]
        call_selected(builder, ints["sel"], tile_shapes, lambda r, s: _tile_function(
            builder.module, context, x.dtype, n_lanes, n_vec, r, s, strided, indexed, rolled), call_args)
        return context.get_dummy_value()

    return sig, codegen


def _tile_function(module, context, dtype, lanes, n_vec, rows, s, strided=False, indexed=False, rolled=False):
    """The tile of one shape as its own (internal, not inlined) function of the module:
    LLVM optimizes each shape apart, which keeps compile time linear in the shapes."""
    elem = context.get_data_type(dtype)
    ptr = elem.as_pointer()
    names = TileArgs.names(strided, indexed)
    arg_types = [I64.as_pointer() if name in _INDEX_ARRAYS else ptr if name in _ARRAYS else I64 for name in names]
    kind = ("_px" if strided else "") + ("_wi" if indexed else "") + ("_rolled" if rolled else "")
    name = f"fastconv_fma_tile_{rows}x{s}{kind}_l{lanes}v{lanes * n_vec}_f{dtype.bitwidth}"
    fn, builder = internal_function(module, name, arg_types, names)
    if builder is not None:
        _TileBuilder(builder, elem, lanes, n_vec, TileArgs(**dict(zip(names, fn.args))), rolled).emit(rows, s)
        builder.ret_void()
    return fn


def _not_unrolled(branch, key: str) -> None:
    """Mark ``branch``, a loop's back edge, so that LLVM does not unroll the loop: a loop ID
    (a node whose first operand is itself) holding llvm.loop.unroll.disable; ``key`` makes it
    the loop's own."""
    module = branch.parent.parent.module
    disable = module.add_metadata([ir.MetaDataString(module, "llvm.loop.unroll.disable")])
    loop_id = module.add_metadata([ir.MetaDataString(module, key), disable])
    loop_id.operands = (loop_id, disable)
    branch.set_metadata("llvm.loop", loop_id)


class _TileBuilder(Loops):
    def __init__(self, builder, elem, lanes, n_vec, args: TileArgs, rolled: bool = False):
        super().__init__(builder, elem, lanes)
        self.n_vec, self.v = n_vec, lanes * n_vec
        self.args = args
        self.rolled = rolled
        self.declare("fmuladd", "masked.store")

    def emit(self, rows, s):
        accs = self._reduction_loop(rows, s)
        accs = self._accumulate(accs, rows, s)
        self._store(self._bias_activation(accs), rows, s)

    def _reduction_loop(self, rows, s):
        """acc[i][p][j] += x[xbase + i*xrow + xoff[r] + p*xpix] * w[wbase + r*V + j*L : +L] for every step r
        (xpix 1, as constant offsets, unless the tile is strided)."""
        b, a = self.b, self.args
        entry = b.block
        loop = b.append_basic_block(f"tile.{rows}x{s}.loop")
        exit_ = b.append_basic_block(f"tile.{rows}x{s}.exit")
        row_bases = [self.at(a.x, b.add(a.xbase, b.mul(const(i), a.xrow))) for i in range(rows)]
        pixel = [const(p) if a.xpix is None else b.mul(const(p), a.xpix) for p in range(s)]
        b.branch(loop)
        b.position_at_end(loop)
        r = b.phi(I64, "r")
        r.add_incoming(const(0), entry)
        zero = ir.Constant(self.vec, None)
        accs = [[[b.phi(self.vec, f"acc{i}_{p}_{j}") for j in range(self.n_vec)] for p in range(s)]
                for i in range(rows)]
        for acc in _flat(accs):
            acc.add_incoming(zero, entry)
        step = b.load(self.at(a.xoff, r))
        wstep = b.mul(r, const(self.v)) if a.woff is None else b.load(self.at(a.woff, r))
        wrow = self.at(a.w, b.add(a.wbase, wstep))
        if a.xpix is None:
            self._prefetch_input(r, row_bases, s)
        else:  # pixels less than a line apart (channels-first 1x1 rows): a step reads new lines, as above
            with b.if_then(b.icmp_signed("<", a.xpix, const(max(1, LINE_BYTES * 8 // self.bits))), likely=True):
                self._prefetch_input(r, row_bases, s, a.xpix)
        ws = [self.load(wrow, const(j * self.lanes)) for j in range(self.n_vec)]
        new = []
        for i in range(rows):
            xrow = self.at(row_bases[i], step)
            new_row = []
            for p in range(s):
                xv = self.splat(b.load(self.at(xrow, pixel[p])))
                new_row.append([self.fma(xv, ws[j], accs[i][p][j]) for j in range(self.n_vec)])
            new.append(new_row)
        r_next = b.add(r, const(1))
        r.add_incoming(r_next, b.block)
        for acc, acc_next in zip(_flat(accs), _flat(new)):
            acc.add_incoming(acc_next, b.block)
        back = b.cbranch(b.icmp_signed("<", r_next, a.n_steps), loop, exit_)
        if self.rolled:
            _not_unrolled(back, b.function.name)
        b.position_at_end(exit_)
        return new

    def _prefetch_input(self, r, row_bases, s, xpix=None):
        """Ask for the lines that step r + INPUT_AHEAD reads, each tile row's first and last
        pixel (``xpix`` elements apart; None: 1), in L1 (the last step's instead near the end)."""
        b, a = self.b, self.args
        ahead = b.add(r, const(INPUT_AHEAD))
        step = b.load(self.at(a.xoff, b.select(b.icmp_signed("<", ahead, a.n_steps), ahead, r)))
        for base in row_bases:
            first = b.gep(base, [step])
            prefetch_l1(b, first)
            if s > 1:
                prefetch_l1(b, b.gep(first, [const(s - 1) if xpix is None else b.mul(const(s - 1), xpix)]))

    def _accumulate(self, accs, rows, s):
        """With ACT_ACCUMULATE: acc += the output's current values (vector loads for full
        channels-last blocks, else through a buffer, as _store writes them)."""
        b, a = self.b, self.args
        shape = [len(accs), len(accs[0]), self.n_vec]

        def add_output(flat):
            full = b.and_(b.icmp_signed("==", a.kstride, const(1)), b.icmp_signed("==", a.kvalid, const(self.v)))
            return self.either(full, flat, lambda f: self._add_vectors(f, rows, s),
                               lambda f: self._add_buffered(f, rows, s))

        on = b.icmp_signed("!=", b.and_(a.act, const(ACT_ACCUMULATE)), const(0))
        flat = self.when(on, _flat(accs), add_output)
        return [[flat[(i * shape[1] + p) * shape[2]:(i * shape[1] + p + 1) * shape[2]] for p in range(shape[1])]
                for i in range(shape[0])]

    def _add_vectors(self, flat, rows, s):
        b, a = self.b, self.args
        out = []
        for i in range(rows):
            for p in range(s):
                base = b.add(b.add(a.obase, b.mul(const(i), a.orow)), b.mul(const(p), a.pstride))
                out += [b.fadd(flat[(i * s + p) * self.n_vec + j], self.load(a.out, b.add(base, const(j * self.lanes))))
                        for j in range(self.n_vec)]
        return out

    def _add_buffered(self, flat, rows, s):
        b, a = self.b, self.args
        buf = cgutils.alloca_once(b, self.elem, size=rows * s * self.v)
        load = _load_function(b.module, self.elem, self.bits)
        b.call(load, list(StoreArgs(buf=buf, out=a.out, rows=const(rows), s=const(s), v=const(self.v), obase=a.obase,
                                    orow=a.orow, pstride=a.pstride, kstride=a.kstride, kvalid=a.kvalid)))
        return [b.fadd(acc, self.load(buf, const(n * self.lanes))) for n, acc in enumerate(flat)]

    def _bias_activation(self, accs):
        """Bias, then the activation by compare-and-select (NaN passes, like layout.activate)."""
        b = self.b
        zero = ir.Constant(self.vec, None)
        six = ir.Constant(self.vec, [ir.Constant(self.elem, 6.0)] * self.lanes)
        code = b.and_(self.args.act, const(ACT_CODE_MASK))
        relu = b.icmp_signed(">=", code, const(ACT_RELU))
        relu6 = b.icmp_signed("==", code, const(ACT_RELU6))
        biases = [self.load(self.args.bias, b.add(self.args.bbase, const(j * self.lanes))) for j in range(self.n_vec)]

        def finish(acc, j):
            v = b.fadd(acc, biases[j])
            lo = b.select(b.fcmp_ordered("<", v, zero), zero, v)
            hi = b.select(b.fcmp_ordered(">", lo, six), six, lo)
            return b.select(relu, b.select(relu6, hi, lo), v)

        return [[[finish(acc, j) for j, acc in enumerate(pixel)] for pixel in row] for row in accs]

    def _store(self, values, rows, s):
        """Channels-last full blocks: vector stores. Channels-first rows of at least
        TRANSPOSE_MIN pixels: transposed in registers. Anything else: through a buffer."""
        b, a = self.b, self.args
        full = b.and_(b.icmp_signed("==", a.kstride, const(1)), b.icmp_signed("==", a.kvalid, const(self.v)))
        row_base = [b.add(a.obase, b.mul(const(i), a.orow)) for i in range(rows)]
        general = b.append_basic_block("store.general")
        done = b.append_basic_block("store.done")
        if s >= TRANSPOSE_MIN:
            first = b.append_basic_block("store.channels_first")
            not_first = b.append_basic_block("store.not_channels_first")
            b.cbranch(b.icmp_signed("==", a.pstride, const(1)), first, not_first)
            b.position_at_end(first)
            for i in range(rows):
                self._store_channels_first(row_base[i], values[i], s)
            b.branch(done)
            b.position_at_end(not_first)
        last = b.append_basic_block("store.channels_last")
        b.cbranch(full, last, general)
        b.position_at_end(last)
        for i in range(rows):
            for p in range(s):
                base = b.add(row_base[i], b.mul(const(p), a.pstride))
                for j in range(self.n_vec):
                    self.store(values[i][p][j], a.out, b.add(base, const(j * self.lanes)))
        b.branch(done)
        b.position_at_end(general)
        self._store_general(values, rows, s)
        b.branch(done)
        b.position_at_end(done)

    def _store_channels_first(self, b_row, values, s):
        """Transpose each block of L pixels x L channels in registers, then store each
        channel's run of consecutive pixels with one (masked) vector store."""
        b = self.b
        n = self.lanes
        undef = ir.Constant(self.vec, ir.Undefined)
        for j in range(self.n_vec):
            for p0 in range(0, s, n):
                m = min(n, s - p0)
                cols = self.transpose([values[p0 + i][j] if p0 + i < s else undef for i in range(n)])
                for c in range(n):
                    k = j * n + c
                    with b.if_then(b.icmp_signed("<", const(k), self.args.kvalid)):
                        index = b.add(b.add(b_row, b.mul(const(k), self.args.kstride)), const(p0))
                        if m == n:
                            self.store(cols[c], self.args.out, index)
                        else:
                            self.store(cols[c], self.args.out, index, self.first_lanes(m))

    def _store_general(self, values, rows, s):
        """Any layout, any number of valid channels: the values go to a stack buffer, and one
        shared, runtime-sized copy loop (_store_function) writes them out."""
        b = self.b
        per_row = s * self.v
        buf = cgutils.alloca_once(b, self.elem, size=rows * per_row)
        for i in range(rows):
            for p in range(s):
                for j in range(self.n_vec):
                    self.store(values[i][p][j], buf, const(i * per_row + p * self.v + j * self.lanes))
        store = _store_function(b.module, self.elem, self.bits)
        a = self.args
        b.call(store, list(StoreArgs(buf=buf, out=a.out, rows=const(rows), s=const(s), v=const(self.v), obase=a.obase,
                                     orow=a.orow, pstride=a.pstride, kstride=a.kstride, kvalid=a.kvalid)))


class StoreArgs(NamedTuple):
    """The arguments of the general store function, in its parameters' order."""
    buf: Any  # the tile's values, (rows, s, v) C-contiguous
    out: Any
    rows: Any  # the tile's shape
    s: Any
    v: Any
    obase: Any  # the output's addressing, as in TileArgs
    orow: Any
    pstride: Any
    kstride: Any
    kvalid: Any


def _store_function(module, elem, bits):
    """out[obase + i*orow + p*pstride + k*kstride] = buf[(i*s + p)*v + k] for i < rows,
    p < s, k < kvalid: one function per module and dtype, shared by every tile shape."""
    ptr = elem.as_pointer()
    fn, b = internal_function(module, f"fastconv_store_tile_f{bits}", [ptr, ptr] + [I64] * 8)
    if b is not None:
        a = StoreArgs(*fn.args)
        with cgutils.for_range(b, a.rows) as i_loop:
            i = i_loop.index
            rbase = b.add(a.obase, b.mul(i, a.orow))
            with cgutils.for_range(b, a.s) as p_loop:
                p = p_loop.index
                pbase = b.add(rbase, b.mul(p, a.pstride))
                src = b.mul(b.add(b.mul(i, a.s), p), a.v)
                with cgutils.for_range(b, a.kvalid) as k_loop:
                    k = k_loop.index
                    value = b.load(b.gep(a.buf, [b.add(src, k)], inbounds=True))
                    b.store(value, b.gep(a.out, [b.add(pbase, b.mul(k, a.kstride))], inbounds=True))
        b.ret_void()
    return fn


def _load_function(module, elem, bits):
    """buf[(i*s + p)*v + k] = out[obase + i*orow + p*pstride + k*kstride] for k < kvalid, 0
    for kvalid <= k < v (i < rows, p < s): _store_function's inverse, for ACT_ACCUMULATE."""
    ptr = elem.as_pointer()
    fn, b = internal_function(module, f"fastconv_load_tile_f{bits}", [ptr, ptr] + [I64] * 8)
    if b is not None:
        a = StoreArgs(*fn.args)
        with cgutils.for_range(b, a.rows) as i_loop:
            rbase = b.add(a.obase, b.mul(i_loop.index, a.orow))
            with cgutils.for_range(b, a.s) as p_loop:
                p = p_loop.index
                pbase = b.add(rbase, b.mul(p, a.pstride))
                dst = b.mul(b.add(b.mul(i_loop.index, a.s), p), a.v)
                with cgutils.for_range(b, a.kvalid) as k_loop:
                    k = k_loop.index
                    value = b.load(b.gep(a.out, [b.add(pbase, b.mul(k, a.kstride))], inbounds=True))
                    b.store(value, b.gep(a.buf, [b.add(dst, k)], inbounds=True))
                with cgutils.for_range_slice(b, a.kvalid, a.v, const(1)) as (k, _):
                    b.store(ir.Constant(elem, 0.0), b.gep(a.buf, [b.add(dst, k)], inbounds=True))
        b.ret_void()
    return fn


class PackArgs(NamedTuple):
    """The arguments of a weight packing function, in its parameters' order."""
    w: Any  # the weights (pointer to the first), and the packed block
    out: Any
    kg: Any  # output channels per group
    steps: Any  # reduction steps: w's last extent
    g: Any  # the group
    kb: Any  # the block of V output channels


@intrinsic(prefer_literal=True)
def pack_weight_block(typingctx, w, g, kb, out, v, lanes, revision):
    """``pack_weight_block(w, g, kb, out, V, LANES, REVISION)``: the weights of output
    channels kb*V ... kb*V+V-1 of group g, in the order the tile reads them:
    ``out[r * V + j] = w[g, kb*V + j, r]`` (zero past the group's K/G channels), w being
    (G, K/G, steps) C-contiguous. Blocks of LANES x LANES are transposed in registers
    (loads and stores of whole vectors), the last steps % LANES one value at a time."""
    if not all(isinstance(a, types.IntegerLiteral) for a in (v, lanes, revision)):
        return None
    if not (isinstance(w, types.Array) and w.ndim == 3 and w.layout == "C" and w.dtype == out.dtype):
        return None
    n_lanes = lanes.literal_value
    n_vec, rem = divmod(v.literal_value, n_lanes)
    if rem:
        return None
    sig = types.none(w, types.intp, types.intp, out, v, lanes, revision)

    def codegen(context, builder, signature, args):
        wa = context.make_array(signature.args[0])(context, builder, args[0])
        oa = context.make_array(signature.args[3])(context, builder, args[3])
        _, kg, steps = cgutils.unpack_tuple(builder, wa.shape, 3)
        g_, kb_ = (context.cast(builder, a, t, types.intp) for a, t in zip(args[1:3], signature.args[1:3]))
        fn = _pack_function(builder.module, context.get_data_type(w.dtype), w.dtype.bitwidth, n_lanes, n_vec)
        builder.call(fn, list(PackArgs(w=wa.data, out=oa.data, kg=kg, steps=steps, g=g_, kb=kb_)))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic(prefer_literal=True)
def pack_weight_block_taps_outer(typingctx, w, g, kb, taps, out, v, lanes, revision):
    """``pack_weight_block_taps_outer(w, g, kb, T, out, V, LANES, REVISION)``: pack_weight_block
    with the steps in (tap, channel) order, w's own steps r = c * T + t being T taps of each
    channel: ``out[(t * C + c) * V + j] = w[g, kb*V + j, c * T + t]`` (C = steps / T; T = 1 is
    pack_weight_block's order). A kernel whose steps run taps outer then reads its weights in
    order, not T * V elements apart."""
    if not all(isinstance(a, types.IntegerLiteral) for a in (v, lanes, revision)):
        return None
    if not (isinstance(w, types.Array) and w.ndim == 3 and w.layout == "C" and w.dtype == out.dtype):
        return None
    n_lanes = lanes.literal_value
    n_vec, rem = divmod(v.literal_value, n_lanes)
    if rem:
        return None
    sig = types.none(w, types.intp, types.intp, types.intp, out, v, lanes, revision)

    def codegen(context, builder, signature, args):
        wa = context.make_array(signature.args[0])(context, builder, args[0])
        oa = context.make_array(signature.args[4])(context, builder, args[4])
        _, kg, steps = cgutils.unpack_tuple(builder, wa.shape, 3)
        g_, kb_, taps_ = (context.cast(builder, a, t, types.intp) for a, t in zip(args[1:4], signature.args[1:4]))
        fn = _pack_function(builder.module, context.get_data_type(w.dtype), w.dtype.bitwidth, n_lanes, n_vec,
                            taps_outer=True)
        builder.call(fn, list(PackArgs(w=wa.data, out=oa.data, kg=kg, steps=steps, g=g_, kb=kb_)) + [taps_])
        return context.get_dummy_value()

    return sig, codegen


def _pack_function(module, elem, bits, lanes, n_vec, taps_outer=False):
    """The packer of pack_weight_block, or with ``taps_outer`` of pack_weight_block_taps_outer
    (one more parameter, T, after PackArgs')."""
    ptr = elem.as_pointer()
    v = lanes * n_vec
    name = f"fastconv_pack_weight_block{'_taps_outer' * taps_outer}_l{lanes}v{v}_f{bits}"
    fn, b = internal_function(module, name, [ptr, ptr] + [I64] * (5 if taps_outer else 4))
    if b is None:
        return fn
    a = PackArgs(*fn.args[:6])
    if taps_outer:
        taps = fn.args[6]
        channels = b.sdiv(a.steps, taps)
    vectors = Vectors(b, elem, lanes)
    zero = ir.Constant(vectors.vec, None)
    k0 = b.mul(a.kb, const(v))
    left = b.sub(a.kg, k0)
    kvalid = b.select(b.icmp_signed("<", left, const(v)), left, const(v))
    # first element of each of the block's V rows; rows past the group repeat the last one (and are zeroed)
    row_start = []
    for j in range(v):
        k = b.add(k0, b.select(b.icmp_signed("<", const(j), kvalid), const(j), b.sub(kvalid, const(1))))
        row_start.append((b.mul(b.add(b.mul(a.g, a.kg), k), a.steps), b.icmp_signed("<", const(j), kvalid)))
    full = b.mul(b.sdiv(a.steps, const(lanes)), const(lanes))
    with cgutils.for_range_slice(b, const(0), full, const(lanes)) as (r0, _):
        dest = _taps_outer_rows(b, r0, lanes, taps, channels) if taps_outer else None
        for jb in range(n_vec):
            rows = []
            for i in range(lanes):
                start, valid = row_start[jb * lanes + i]
                rows.append(b.select(valid, vectors.load(a.w, b.add(start, r0)), zero))
            for col, value in enumerate(vectors.transpose(rows)):
                row = dest[col] if taps_outer else b.add(r0, const(col))
                vectors.store(value, a.out, b.add(b.mul(row, const(v)), const(jb * lanes)))
    with cgutils.for_range_slice(b, full, a.steps, const(1)) as (r, _):
        row = b.add(b.mul(b.srem(r, taps), channels), b.sdiv(r, taps)) if taps_outer else r
        for j in range(v):
            start, valid = row_start[j]
            value = b.select(valid, b.load(vectors.at(a.w, b.add(start, r))), ir.Constant(elem, 0.0))
            b.store(value, vectors.at(a.out, b.add(b.mul(row, const(v)), const(j))))
    b.ret_void()
    return fn


def _taps_outer_rows(b, r0, count, taps, channels):
    """The rows t * C + c of steps r0 ... r0 + count - 1 (r = c * T + t): one division, then
    each tap counted on from the one before."""
    t, c = b.srem(r0, taps), b.sdiv(r0, taps)
    rows = []
    for i in range(count):
        rows.append(b.add(b.mul(t, channels), c))
        if i + 1 < count:
            following = b.add(t, const(1))
            wrap = b.icmp_signed("==", following, taps)
            t, c = b.select(wrap, const(0), following), b.add(c, b.zext(wrap, I64))
    return rows


def _flat(nested):
    return [a for row in nested for pixel in row for a in pixel]
