"""A weight gradient block from (tap, in-channel) to the weight's (in-channel, tap) order in
registers, emitted as LLVM IR (:func:`taps_to_channels`).

The weight gradient's tiles (weight_grad_tile.py) sum with the in-channels as the vector, so a
block of one out-channel lies as ``src[t * sstep + c]``; the weight wants ``dst[c * T + t]``.
Element by element, the transposition read T lines a tap apart for every channel and took longer
than the whole write of the weight (Ice Lake-SP, one thread, 512x512x3x3: 1.8 ms to transpose
into a buffer in L1, 1.5 to copy it to the weight). Here a block of L channels (L lanes) reads T
vectors, one per tap, and forms the T output vectors of its L * T consecutive elements with
two-input shuffles, each output vector gathering its lanes from the taps it needs in turn.

Flat arrays, element indexes, for blocks b in [0, blocks):
``dst[di + (b * L + c) * T + t] = src[si + t * sstep + b * L + c]`` for c < L, t < T.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from llvmlite import ir
from numba.extending import intrinsic

from .ir import I32, Loops, array_intrinsic, const, internal_function, parameters, source_revision

# Kernels pass this to the intrinsic (see ir.source_revision).
REVISION = source_revision(__file__)


def taps_literal(taps: int) -> str:
    """The compile-time tap count the intrinsic reads: "tT"."""
    return f"t{taps}"


def _parse(text: str) -> int:
    return int(text[1:])


class TransposeArgs(NamedTuple):
    dst: Any
    src: Any
    di: Any
    si: Any
    sstep: Any
    blocks: Any


_ARRAYS = ("dst", "src")
_LITERALS = ("taps", "lanes", "revision")


def output_sources(taps: int, lanes: int, i: int) -> dict:
    """Output vector ``i`` of a block: {tap: [(lane, source lane), ...]}, taps in order."""
    sources: dict = {}
    for q in range(lanes):
        m = i * lanes + q
        sources.setdefault(m % taps, []).append((q, m // taps))
    return dict(sorted(sources.items()))


class _TransposeBuilder(Loops):
    def __init__(self, builder, elem, lanes, args, taps):
        super().__init__(builder, elem, lanes)
        self.a = TransposeArgs(*args)
        self.taps = taps

    def emit(self):
        b, a, n = self.b, self.a, self.lanes

        def block(k, carried):
            start = b.mul(k, const(n))
            inputs = [self.load(a.src, b.add(b.add(a.si, b.mul(const(t), a.sstep)), start)) for t in range(self.taps)]
            out_base = b.add(a.di, b.mul(start, const(self.taps)))
            for i in range(self.taps):
                self.store(self._gather(inputs, output_sources(self.taps, n, i)), a.dst, b.add(out_base, const(i * n)))
            return carried

        self.loop(const(0), lambda k: b.icmp_signed("<", k, a.blocks), const(1), [], block, "block")

    def _gather(self, inputs, sources):
        """One output vector: lane q from inputs[t][lane], for each (q, lane) of each tap t in ``sources``; each
        shuffle keeps the lanes gathered so far (a lane not yet gathered holds any value)."""
        n = self.lanes
        taps = list(sources)
        mask = list(range(n))
        for q, lane in sources[taps[0]]:
            mask[q] = lane
        value = self.b.shuffle_vector(inputs[taps[0]], inputs[taps[0]], self._mask(mask))
        for t in taps[1:]:
            mask = list(range(n))
            for q, lane in sources[t]:
                mask[q] = n + lane
            value = self.b.shuffle_vector(value, inputs[t], self._mask(mask))
        return value

    def _mask(self, lanes):
        return ir.Constant(ir.VectorType(I32, self.lanes), lanes)


def _function(module, elem, lanes, taps, fields):
    arg_types = [elem.as_pointer() if n in _ARRAYS else const(0).type for n in fields]
    name = f"fastconv_taps_to_channels_t{taps}_l{lanes}_f{elem.intrinsic_name[1:]}"
    fn, body = internal_function(module, name, arg_types, fields)
    if body is not None:
        _TransposeBuilder(body, elem, lanes, fn.args, taps).emit()
        body.ret_void()
    return fn


@intrinsic(prefer_literal=True)
def taps_to_channels(typingctx, dst, src, di, si, sstep, blocks, taps, lanes, revision):
    """``taps_to_channels(dst, src, di, si, sstep, blocks, TAPS, LANES, REVISION)``: ``blocks``
    blocks of LANES channels from (tap, channel) to (channel, tap) order (module docstring); TAPS
    the literal of :func:`taps_literal`."""
    return array_intrinsic(parameters(locals()), _ARRAYS, _LITERALS, _parse, _function)
