"""What the vector IR builders share: their functions' boilerplate, the source revision the
kernels pass, and :class:`Vectors`, the vector values, loads, stores, masks and intrinsics of
one element type and width.

Each builder emits its register code as internal functions of the Numba module that calls
it (one per shape, dtype and width; :func:`internal_function`), so that LLVM optimizes each
apart and a module holds each at most once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from llvmlite import ir
from numba.core import cgutils, types

I1, I32, I64 = ir.IntType(1), ir.IntType(32), ir.IntType(64)


def const(value: int) -> ir.Constant:
    """An i64 constant (indices and counts are i64 throughout)."""
    return ir.Constant(I64, value)


def source_revision(builder_file: str) -> int:
    """A hash of a builder's source file and of this one. Numba's on-disk cache keys a
    kernel on its own source and closure constants, not on the IR of the intrinsics it
    calls; kernels pass this number to the intrinsic as a literal (a closure constant), so
    that editing the IR a builder emits invalidates their cached machine code."""
    digest = hashlib.sha256(Path(builder_file).read_bytes() + Path(__file__).read_bytes())
    return int(digest.hexdigest()[:12], 16)


def parameters(typing_locals: dict) -> dict:
    """An intrinsic's parameters by name, in their order, from the typing function's
    ``locals()`` on entry (the typing context left out): code generation then takes its
    arguments by name, not by a position kept in step with the signature by hand."""
    return {name: value for name, value in typing_locals.items() if name != "typingctx"}


def array_intrinsic(params: dict, arrays: tuple, literals: tuple, parse, function):
    """The signature and code generation of an intrinsic whose ``params`` (by name, from
    :func:`parameters`) are arrays of one dtype (``arrays``), ints, and the (shape string,
    lanes, revision) ``literals``; None (no match) for other types. The call goes to
    ``function(module, elem, lanes, parse(shape), fields)``, the LLVM function taking the
    arrays' data pointers and the ints as 64-bit, in ``fields`` order."""
    shape, lanes, revision = (params[n] for n in literals)
    if not isinstance(shape, types.StringLiteral) or not all(
            isinstance(a, types.IntegerLiteral) for a in (lanes, revision)):
        return None
    if len({params[n].dtype for n in arrays}) != 1:
        return None
    fields = tuple(n for n in params if n not in literals)
    dtype, parsed, n_lanes = params[arrays[0]].dtype, parse(shape.literal_value), lanes.literal_value
    sig = types.none(*(params[n] if n in arrays or n in literals else types.intp for n in params))

    def codegen(context, builder, signature, values):
        arg_types, vals = dict(zip(params, signature.args)), dict(zip(params, values))
        ptrs = {n: context.make_array(arg_types[n])(context, builder, vals[n]).data for n in arrays}
        ints = {n: context.cast(builder, vals[n], arg_types[n], types.intp) for n in fields if n not in arrays}
        fn = function(builder.module, context.get_data_type(dtype), n_lanes, parsed, fields)
        builder.call(fn, [ptrs[n] if n in arrays else ints[n] for n in fields])
        return context.get_dummy_value()

    return sig, codegen


def call_selected(builder, selector, tiles, make_function, call_args) -> None:
    """Call, with ``call_args``, the function ``make_function(rows, steps)`` of the tile shape
    that ``selector`` (an index into ``tiles``, a sequence of (rows, steps)) names; no call
    for any other value."""
    done = builder.append_basic_block("tile.done")
    switch = builder.switch(selector, done)
    for i, (r, s) in enumerate(tiles):
        fn = make_function(r, s)
        block = builder.append_basic_block(f"tile.{r}x{s}")
        switch.add_case(ir.Constant(I64, i), block)
        builder.position_at_end(block)
        builder.call(fn, call_args)
        builder.branch(done)
    builder.position_at_end(done)


def internal_function(module, name: str, arg_types, arg_names=()):
    """The module's void function ``name``, and an IRBuilder at its entry block when its body
    is still to be written (None when the module has it already). New functions are
    internal and never inlined: each is compiled once, however many call sites it has."""
    fn = cgutils.get_or_insert_function(module, ir.FunctionType(ir.VoidType(), arg_types), name)
    if not fn.is_declaration:
        return fn, None
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    fn.attributes.add("nounwind")
    for arg, arg_name in zip(fn.args, arg_names):
        arg.name = arg_name
    return fn, ir.IRBuilder(fn.append_basic_block("entry"))


class Vectors:
    """Vectors of ``lanes`` elements of ``elem`` (an LLVM float type), written by ``builder``.

    Loads and stores address flat arrays by element index and are aligned to one element
    (the arrays are the caller's, with no other alignment); with a mask (a vector of i1)
    only the lanes set are read or written, through ``llvm.masked.load``/``store``.
    """

    def __init__(self, builder: ir.IRBuilder, elem, lanes: int):
        self.b = builder
        self.elem, self.lanes = elem, lanes
        self.bits = int(elem.intrinsic_name[1:])
        self.align = self.bits // 8
        self.vec = ir.VectorType(elem, lanes)
        self.vptr = self.vec.as_pointer()
        self.mask_type = ir.VectorType(I1, lanes)

    def declare(self, *names: str) -> None:
        """Declare these intrinsics ("fmuladd", "masked.load", "masked.store") now, in this
        order: the order of the module's declarations. Any other is declared when first called."""
        for name in names:
            self._intrinsic(name)

    def _intrinsic(self, name: str):
        vec, vptr, v, suffix = self.vec, self.vptr, f"v{self.lanes}f{self.bits}", ""
        if name == "fmuladd":
            fnty = ir.FunctionType(vec, [vec] * 3)
        elif name == "masked.load":
            fnty, suffix = ir.FunctionType(vec, [vptr, I32, self.mask_type, vec]), ".p0"
        elif name == "masked.store":
            fnty, suffix = ir.FunctionType(ir.VoidType(), [vec, vptr, I32, self.mask_type]), ".p0"
        else:
            raise ValueError(f"intrinsic: got {name!r}, expected 'fmuladd', 'masked.load' or 'masked.store'")
        return cgutils.get_or_insert_function(self.b.module, fnty, f"llvm.{name}.{v}{suffix}")

    def at(self, base, index):
        """The address of element ``index`` of the array at ``base``."""
        return self.b.gep(base, [index], inbounds=True)

    def vector_at(self, base, index):
        """The address of the vector starting at element ``index``."""
        return self.b.bitcast(self.at(base, index), self.vptr)

    def load(self, base, index, mask=None):
        if mask is None:
            return self.b.load(self.vector_at(base, index), align=self.align)
        return self.b.call(self._intrinsic("masked.load"), [self.vector_at(base, index), ir.Constant(I32, self.align),
                                                             mask, ir.Constant(self.vec, None)])

    def store(self, value, base, index, mask=None):
        if mask is None:
            self.b.store(value, self.vector_at(base, index), align=self.align)
        else:
            self.b.call(self._intrinsic("masked.store"), [value, self.vector_at(base, index),
                                                          ir.Constant(I32, self.align), mask])

    def fma(self, a, b, c):
        """a * b + c, fused where the target has FMA."""
        return self.b.call(self._intrinsic("fmuladd"), [a, b, c])

    def splat(self, scalar):
        """A vector of ``lanes`` copies of ``scalar`` (of any type)."""
        b = self.b
        undef = ir.Constant(ir.VectorType(scalar.type, self.lanes), ir.Undefined)
        first = b.insert_element(undef, scalar, ir.Constant(I32, 0))
        return b.shuffle_vector(first, undef, ir.Constant(ir.VectorType(I32, self.lanes), None))

    def lanes_below(self, count):
        """The mask of lanes i < count (count an i64 value)."""
        lane = ir.Constant(ir.VectorType(I64, self.lanes), list(range(self.lanes)))
        return self.b.icmp_signed("<", lane, self.splat(count))

    def first_lanes(self, count: int) -> ir.Constant:
        """The constant mask of lanes i < count."""
        return ir.Constant(self.mask_type, [int(i < count) for i in range(self.lanes)])

    def transpose(self, rows):
        """rows[i][l] -> out[l][i] for n vectors of n lanes (n a power of two): log2(n) rounds
        of n two-input shuffles, each round swapping blocks of h lanes between rows i, i+h."""
        n = len(rows)
        rows = list(rows)
        h = n // 2
        while h >= 1:
            lo = ir.Constant(ir.VectorType(I32, n), [lane if not lane & h else n + lane - h for lane in range(n)])
            hi = ir.Constant(ir.VectorType(I32, n), [lane + h if not lane & h else n + lane for lane in range(n)])
            for i in range(n):
                if not i & h:
                    a, c = rows[i], rows[i + h]
                    rows[i], rows[i + h] = self.b.shuffle_vector(a, c, lo), self.b.shuffle_vector(a, c, hi)
            h //= 2
        return rows


class Loops(Vectors):
    """Loops carrying vectors, and branches that update them."""

    def loop(self, start, keep_going, step, carried, body, name):
        """for (i = start; keep_going(i); i += step) carried = body(i, carried). Returns (i, carried) at exit."""
        b = self.b
        entry = b.block
        head = b.append_basic_block(f"{name}.head")
        body_bb = b.append_basic_block(f"{name}.body")
        exit_ = b.append_basic_block(f"{name}.exit")
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(I64, name)
        i.add_incoming(start, entry)
        phis = []
        for value in carried:
            phi = b.phi(value.type)
            phi.add_incoming(value, entry)
            phis.append(phi)
        b.cbranch(keep_going(i), body_bb, exit_)
        b.position_at_end(body_bb)
        updated = body(i, list(phis))
        end = b.block
        i.add_incoming(b.add(i, step), end)
        for phi, value in zip(phis, updated):
            phi.add_incoming(value, end)
        b.branch(head)
        b.position_at_end(exit_)
        return i, phis

    def when(self, cond, carried, body):
        """carried updated by body(carried) where cond holds, else unchanged."""
        b = self.b
        before = b.block
        then = b.append_basic_block("when.then")
        merge = b.append_basic_block("when.merge")
        b.cbranch(cond, then, merge)
        b.position_at_end(then)
        updated = body(list(carried))
        then_end = b.block
        b.branch(merge)
        b.position_at_end(merge)
        out = []
        for old, new in zip(carried, updated):
            phi = b.phi(old.type)
            phi.add_incoming(old, before)
            phi.add_incoming(new, then_end)
            out.append(phi)
        return out

    def either(self, cond, carried, if_true, if_false):
        """if_true(carried) where cond holds, else if_false(carried)."""
        b = self.b
        yes = b.append_basic_block("either.true")
        no = b.append_basic_block("either.false")
        merge = b.append_basic_block("either.merge")
        b.cbranch(cond, yes, no)
        b.position_at_end(yes)
        from_yes = if_true(list(carried))
        yes_end = b.block
        b.branch(merge)
        b.position_at_end(no)
        from_no = if_false(list(carried))
        no_end = b.block
        b.branch(merge)
        b.position_at_end(merge)
        out = []
        for a, c in zip(from_yes, from_no):
            phi = b.phi(a.type)
            phi.add_incoming(a, yes_end)
            phi.add_incoming(c, no_end)
            out.append(phi)
        return out
