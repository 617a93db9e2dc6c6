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
the 32 zmm registers, without spills.

Layouts the tile assumes (prepared by conv/direct/tiled.py):

- input ``x``, flat: reduction step r (one tap, one input channel) of pixel p in tile
  row i reads ``x[xbase + i * xrow + xoff[r] + p]`` (the W axis is innermost and split
  by stride phase, so a row's S pixels are S consecutive elements for every tap);
- weights ``w``, flat: ``w[wbase + r * V + v]`` (output channels innermost, padded to V);
- bias ``bias[bbase + v]`` (padded the same way);
- output ``out[obase + i * orow + p * pstride + v * kstride]`` for ``v < kvalid``:
  channels-last (``kstride == 1``: vector stores when the block is full) or
  channels-first (``pstride == 1``: rows of 7 or more pixels are transposed in registers
  and each channel's run of pixels stored with one masked vector store).

One intrinsic carries several tile shapes; ``sel`` picks one at run time, so any output
plane is covered by full-speed tiles without padding the output.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

ACT_NONE, ACT_RELU, ACT_RELU6 = 0, 1, 2  # the codes of layout.ACTIVATION_CODES
TRANSPOSE_MIN = 7  # narrower rows store channels-first through the general path (less code to compile)


def shapes_literal(shapes) -> str:
    """Tile shapes ((R, S), ...) as the string constant fma_tile reads: "1x14 2x7 ..."."""
    return " ".join(f"{r}x{s}" for r, s in shapes)


def parse_shapes(text: str) -> tuple:
    return tuple(tuple(int(n) for n in item.split("x")) for item in text.split())


# Numba's on-disk cache keys a kernel on its own source file and closure constants, not
# on the intrinsics it calls; kernels pass this hash of this file to fma_tile, so that
# editing the IR below invalidates their cached machine code.
REVISION = int(hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12], 16)


@intrinsic(prefer_literal=True)
def fma_tile(typingctx, x, w, xoff, bias, out, xbase, xrow, wbase, bbase, obase, orow, pstride, kstride, kvalid, act,
             sel, shapes, v, lanes, revision):
    """``fma_tile(x, w, xoff, bias, out, xbase, xrow, wbase, bbase, obase, orow, pstride,
    kstride, kvalid, act, sel, SHAPES, V, LANES, REVISION)``: one tile of shape
    ``parse_shapes(SHAPES)[sel]`` by V channels, in vectors of LANES elements. The last
    four are compile-time constants (literals)."""
    return _tile_intrinsic((x, w, xoff, bias, out), (xbase, xrow, wbase, bbase, obase, orow, pstride, kstride,
                                                      kvalid, act, sel), shapes, v, lanes, revision, False)


@intrinsic(prefer_literal=True)
def fma_tile_strided(typingctx, x, w, xoff, bias, out, xbase, xrow, wbase, bbase, obase, orow, pstride, kstride,
                     kvalid, act, xpix, sel, shapes, v, lanes, revision):
    """fma_tile whose pixel p reads ``x[xbase + i * xrow + xoff[r] + p * xpix]``: channels-last
    input read in place by a 1x1 convolution (xpix = channels)."""
    return _tile_intrinsic((x, w, xoff, bias, out), (xbase, xrow, wbase, bbase, obase, orow, pstride, kstride,
                                                      kvalid, act, xpix, sel), shapes, v, lanes, revision, True)


def _tile_intrinsic(arrays_t, scalars_t, shapes, v, lanes, revision, strided):
    """Typing and code generation of fma_tile (strided: of fma_tile_strided): a switch over
    the tile shapes, each calling its own tile function."""
    if not isinstance(shapes, types.StringLiteral) or not all(
            isinstance(a, types.IntegerLiteral) for a in (v, lanes, revision)):
        return None
    x, w, _, bias, out = arrays_t
    tile_shapes, n_lanes = parse_shapes(shapes.literal_value), lanes.literal_value
    n_vec, rem = divmod(v.literal_value, n_lanes)
    if rem or not tile_shapes or not (x.dtype == w.dtype == bias.dtype == out.dtype):
        return None
    n_scalars = len(scalars_t)
    sig = types.none(*arrays_t, *([types.intp] * n_scalars), shapes, v, lanes, revision)

    def codegen(context, builder, signature, args):
        arrays = [context.make_array(t)(context, builder, a) for t, a in zip(signature.args[:5], args[:5])]
        scalars = [context.cast(builder, a, t, types.intp)
                   for t, a in zip(signature.args[5:5 + n_scalars], args[5:5 + n_scalars])]
        call_args = [a.data for a in arrays] + [arrays[2].nitems] + scalars[:-1]
        done = builder.append_basic_block("tile.done")
        switch = builder.switch(scalars[-1], done)
        for i, (r, s) in enumerate(tile_shapes):
            fn = _tile_function(builder.module, context, x.dtype, n_lanes, n_vec, r, s, strided)
            block = builder.append_basic_block(f"tile.{r}x{s}")
            switch.add_case(ir.Constant(ir.IntType(64), i), block)
            builder.position_at_end(block)
            builder.call(fn, call_args)
            builder.branch(done)
        builder.position_at_end(done)
        return context.get_dummy_value()

    return sig, codegen


_SCALAR_NAMES = ("n_steps", "xbase", "xrow", "wbase", "bbase", "obase", "orow", "pstride", "kstride", "kvalid", "act")


def _tile_function(module, context, dtype, lanes, n_vec, rows, s, strided=False):
    """The tile of one shape as its own (internal, not inlined) function of the module:
    LLVM optimizes each shape apart, which keeps compile time linear in the shapes.
    A strided tile takes the input's pixel stride as one more, last, argument."""
    elem = context.get_data_type(dtype)
    ptr = elem.as_pointer()
    names = _SCALAR_NAMES + (("xpix",) if strided else ())
    fnty = ir.FunctionType(ir.VoidType(), [ptr, ptr, ir.IntType(64).as_pointer(), ptr, ptr]
                           + [ir.IntType(64)] * len(names))
    name = f"fastconv_fma_tile_{rows}x{s}{'_px' if strided else ''}_l{lanes}v{lanes * n_vec}_f{dtype.bitwidth}"
    fn = cgutils.get_or_insert_function(module, fnty, name)
    if fn.is_declaration:
        fn.linkage = "internal"
        fn.attributes.add("noinline")
        fn.attributes.add("nounwind")
        for a, arg_name in zip(fn.args, ("x", "w", "xoff", "bias", "out") + names):
            a.name = arg_name
        builder = ir.IRBuilder(fn.append_basic_block("entry"))
        _TileBuilder(builder, elem, dtype.bitwidth, lanes, n_vec, fn.args).emit(rows, s)
        builder.ret_void()
    return fn


class _TileBuilder:
    def __init__(self, builder, elem, bits, lanes, n_vec, args):
        self.b = builder
        self.i64, self.i32 = ir.IntType(64), ir.IntType(32)
        self.elem = elem
        self.align = bits // 8
        self.bits = bits
        self.lanes, self.n_vec, self.v = lanes, n_vec, lanes * n_vec
        self.vec = ir.VectorType(self.elem, lanes)
        self.vptr = self.vec.as_pointer()
        (self.x, self.w, self.xoff, self.bias, self.out, self.n_steps, self.xbase, self.xrow, self.wbase, self.bbase,
         self.obase, self.orow, self.pstride, self.kstride, self.kvalid, self.act) = args[:16]
        self.xpix = args[16] if len(args) > 16 else None  # pixel stride of the input; None: 1, as constants
        self.fmuladd = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(self.vec, [self.vec] * 3), f"llvm.fmuladd.v{lanes}f{bits}")
        mask = ir.VectorType(ir.IntType(1), lanes)
        self.masked_store = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [self.vec, self.vptr, self.i32, mask]),
            f"llvm.masked.store.v{lanes}f{bits}.p0")

    def c(self, value):
        return ir.Constant(self.i64, value)

    def at(self, base, index):
        return self.b.gep(base, [index], inbounds=True)

    def load_vec(self, base, index):
        return self.b.load(self.b.bitcast(self.at(base, index), self.vptr), align=self.align)

    def store_vec(self, value, base, index):
        self.b.store(value, self.b.bitcast(self.at(base, index), self.vptr), align=self.align)

    def splat(self, scalar):
        b = self.b
        undef = ir.Constant(self.vec, ir.Undefined)
        first = b.insert_element(undef, scalar, ir.Constant(self.i32, 0))
        return b.shuffle_vector(first, undef, ir.Constant(ir.VectorType(self.i32, self.lanes), None))

    def emit(self, rows, s):
        accs = self._reduction_loop(rows, s)
        self._store(self._bias_activation(accs), rows, s)

    def _reduction_loop(self, rows, s):
        """acc[i][p][j] += x[xbase + i*xrow + xoff[r] + p*xpix] * w[wbase + r*V + j*L : +L] for every step r
        (xpix 1, as constant offsets, unless the tile is strided)."""
        b = self.b
        entry = b.block
        loop = b.append_basic_block(f"tile.{rows}x{s}.loop")
        exit_ = b.append_basic_block(f"tile.{rows}x{s}.exit")
        row_bases = [self.at(self.x, b.add(self.xbase, b.mul(self.c(i), self.xrow))) for i in range(rows)]
        pixel = [self.c(p) if self.xpix is None else b.mul(self.c(p), self.xpix) for p in range(s)]
        b.branch(loop)
        b.position_at_end(loop)
        r = b.phi(self.i64, "r")
        r.add_incoming(self.c(0), entry)
        zero = ir.Constant(self.vec, None)
        accs = [[[b.phi(self.vec, f"acc{i}_{p}_{j}") for j in range(self.n_vec)] for p in range(s)]
                for i in range(rows)]
        for a in _flat(accs):
            a.add_incoming(zero, entry)
        step = b.load(self.at(self.xoff, r))
        wrow = self.at(self.w, b.add(self.wbase, b.mul(r, self.c(self.v))))
        ws = [self.load_vec(wrow, self.c(j * self.lanes)) for j in range(self.n_vec)]
        new = []
        for i in range(rows):
            xrow = self.at(row_bases[i], step)
            new_row = []
            for p in range(s):
                xv = self.splat(b.load(self.at(xrow, pixel[p])))
                new_row.append([b.call(self.fmuladd, [xv, ws[j], accs[i][p][j]]) for j in range(self.n_vec)])
            new.append(new_row)
        r_next = b.add(r, self.c(1))
        r.add_incoming(r_next, b.block)
        for a, a_next in zip(_flat(accs), _flat(new)):
            a.add_incoming(a_next, b.block)
        b.cbranch(b.icmp_signed("<", r_next, self.n_steps), loop, exit_)
        b.position_at_end(exit_)
        return new

    def _bias_activation(self, accs):
        """Bias, then the activation by compare-and-select (NaN passes, like layout.activate)."""
        b = self.b
        zero = ir.Constant(self.vec, None)
        six = ir.Constant(self.vec, [ir.Constant(self.elem, 6.0)] * self.lanes)
        relu = b.icmp_signed(">=", self.act, self.c(ACT_RELU))
        relu6 = b.icmp_signed("==", self.act, self.c(ACT_RELU6))
        biases = [self.load_vec(self.bias, b.add(self.bbase, self.c(j * self.lanes))) for j in range(self.n_vec)]

        def finish(acc, j):
            v = b.fadd(acc, biases[j])
            lo = b.select(b.fcmp_ordered("<", v, zero), zero, v)
            hi = b.select(b.fcmp_ordered(">", lo, six), six, lo)
            return b.select(relu, b.select(relu6, hi, lo), v)

        return [[[finish(acc, j) for j, acc in enumerate(pixel)] for pixel in row] for row in accs]

    def _store(self, values, rows, s):
        """Channels-last full blocks: vector stores. Channels-first rows of at least
        TRANSPOSE_MIN pixels: transposed in registers. Anything else: through a buffer."""
        b = self.b
        full = b.and_(b.icmp_signed("==", self.kstride, self.c(1)), b.icmp_signed("==", self.kvalid, self.c(self.v)))
        row_base = [b.add(self.obase, b.mul(self.c(i), self.orow)) for i in range(rows)]
        general = b.append_basic_block("store.general")
        done = b.append_basic_block("store.done")
        if s >= TRANSPOSE_MIN:
            first = b.append_basic_block("store.channels_first")
            not_first = b.append_basic_block("store.not_channels_first")
            b.cbranch(b.icmp_signed("==", self.pstride, self.c(1)), first, not_first)
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
                base = b.add(row_base[i], b.mul(self.c(p), self.pstride))
                for j in range(self.n_vec):
                    self.store_vec(values[i][p][j], self.out, b.add(base, self.c(j * self.lanes)))
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
                cols = _transpose(b, [values[p0 + i][j] if p0 + i < s else undef for i in range(n)])
                for c in range(n):
                    k = j * n + c
                    with b.if_then(b.icmp_signed("<", self.c(k), self.kvalid)):
                        index = b.add(b.add(b_row, b.mul(self.c(k), self.kstride)), self.c(p0))
                        if m == n:
                            self.store_vec(cols[c], self.out, index)
                        else:
                            mask = ir.Constant(ir.VectorType(ir.IntType(1), n), [int(i < m) for i in range(n)])
                            ptr = b.bitcast(self.at(self.out, index), self.vptr)
                            b.call(self.masked_store, [cols[c], ptr, ir.Constant(self.i32, self.align), mask])

    def _store_general(self, values, rows, s):
        """Any layout, any number of valid channels: the values go to a stack buffer, and one
        shared, runtime-sized copy loop (_store_function) writes them out."""
        b = self.b
        per_row = s * self.v
        buf = cgutils.alloca_once(b, self.elem, size=rows * per_row)
        for i in range(rows):
            for p in range(s):
                for j in range(self.n_vec):
                    self.store_vec(values[i][p][j], buf, self.c(i * per_row + p * self.v + j * self.lanes))
        store = _store_function(b.module, self.elem, self.bits)
        b.call(store, [buf, self.out, self.c(rows), self.c(s), self.c(self.v), self.obase, self.orow, self.pstride,
                       self.kstride, self.kvalid])


def _store_function(module, elem, bits):
    """out[obase + i*orow + p*pstride + k*kstride] = buf[(i*s + p)*v + k] for i < rows,
    p < s, k < kvalid: one function per module and dtype, shared by every tile shape."""
    i64 = ir.IntType(64)
    ptr = elem.as_pointer()
    fnty = ir.FunctionType(ir.VoidType(), [ptr, ptr] + [i64] * 8)
    fn = cgutils.get_or_insert_function(module, fnty, f"fastconv_store_tile_f{bits}")
    if fn.is_declaration:
        fn.linkage = "internal"
        fn.attributes.add("noinline")
        fn.attributes.add("nounwind")
        buf, out, rows, s, v, obase, orow, pstride, kstride, kvalid = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        with cgutils.for_range(b, rows) as i_loop:
            i = i_loop.index
            rbase = b.add(obase, b.mul(i, orow))
            with cgutils.for_range(b, s) as p_loop:
                p = p_loop.index
                pbase = b.add(rbase, b.mul(p, pstride))
                src = b.mul(b.add(b.mul(i, s), p), v)
                with cgutils.for_range(b, kvalid) as k_loop:
                    k = k_loop.index
                    value = b.load(b.gep(buf, [b.add(src, k)], inbounds=True))
                    b.store(value, b.gep(out, [b.add(pbase, b.mul(k, kstride))], inbounds=True))
        b.ret_void()
    return fn


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
        builder.call(fn, [wa.data, oa.data, kg, steps, g_, kb_])
        return context.get_dummy_value()

    return sig, codegen


def _pack_function(module, elem, bits, lanes, n_vec):
    i64 = ir.IntType(64)
    ptr = elem.as_pointer()
    fnty = ir.FunctionType(ir.VoidType(), [ptr, ptr, i64, i64, i64, i64])
    v = lanes * n_vec
    fn = cgutils.get_or_insert_function(module, fnty, f"fastconv_pack_weight_block_l{lanes}v{v}_f{bits}")
    if not fn.is_declaration:
        return fn
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    fn.attributes.add("nounwind")
    w, out, kg, steps, g, kb = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    c = lambda value: ir.Constant(i64, value)  # noqa: E731
    vec = ir.VectorType(elem, lanes)
    vptr = vec.as_pointer()
    align = bits // 8
    zero = ir.Constant(vec, None)
    k0 = b.mul(kb, c(v))
    left = b.sub(kg, k0)
    kvalid = b.select(b.icmp_signed("<", left, c(v)), left, c(v))
    # first element of each of the block's V rows; rows past the group repeat the last one (and are zeroed)
    row_start = []
    for j in range(v):
        k = b.add(k0, b.select(b.icmp_signed("<", c(j), kvalid), c(j), b.sub(kvalid, c(1))))
        row_start.append((b.mul(b.add(b.mul(g, kg), k), steps), b.icmp_signed("<", c(j), kvalid)))
    full = b.mul(b.sdiv(steps, c(lanes)), c(lanes))
    with cgutils.for_range_slice(b, c(0), full, c(lanes)) as (r0, _):
        for jb in range(n_vec):
            rows = []
            for i in range(lanes):
                start, valid = row_start[jb * lanes + i]
                src = b.bitcast(b.gep(w, [b.add(start, r0)], inbounds=True), vptr)
                rows.append(b.select(valid, b.load(src, align=align), zero))
            for col, value in enumerate(_transpose(b, rows)):
                dst = b.gep(out, [b.add(b.mul(b.add(r0, c(col)), c(v)), c(jb * lanes))], inbounds=True)
                b.store(value, b.bitcast(dst, vptr), align=align)
    with cgutils.for_range_slice(b, full, steps, c(1)) as (r, _):
        for j in range(v):
            start, valid = row_start[j]
            value = b.select(valid, b.load(b.gep(w, [b.add(start, r)], inbounds=True)), ir.Constant(elem, 0.0))
            b.store(value, b.gep(out, [b.add(b.mul(r, c(v)), c(j))], inbounds=True))
    b.ret_void()
    return fn


def _flat(nested):
    return [a for row in nested for pixel in row for a in pixel]


def _transpose(b, rows):
    """rows[i][l] -> out[l][i] for n vectors of n lanes (n a power of two): log2(n) rounds
    of n two-input shuffles, each round swapping blocks of h lanes between rows i, i+h."""
    n = len(rows)
    rows = list(rows)
    i32 = ir.IntType(32)
    h = n // 2
    while h >= 1:
        lo = ir.Constant(ir.VectorType(i32, n), [lane if not lane & h else n + lane - h for lane in range(n)])
        hi = ir.Constant(ir.VectorType(i32, n), [lane + h if not lane & h else n + lane for lane in range(n)])
        for i in range(n):
            if not i & h:
                a, c = rows[i], rows[i + h]
                rows[i], rows[i + h] = b.shuffle_vector(a, c, lo), b.shuffle_vector(a, c, hi)
        h //= 2
    return rows
