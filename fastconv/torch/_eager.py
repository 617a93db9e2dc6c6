"""The eager path: an op's own kernel function called straight from Python, under a thin
``torch.autograd.Function`` when a gradient can flow, instead of through its registered
``torch.ops.fastconv.*`` op.

Why: on a tiny conv2d (bench/torch_overhead.py) the registered op cost about 25 us over
the bare NumPy call without gradients (the dispatcher's boxed call into a Python kernel)
and about 50-60 us with them (also torch's Python autograd wrapper for registered formulas,
which re-reads the schema on every call and builds its ``Function`` through the pytree
utilities). An ``autograd.Function`` applied through its C entry point costs about 3 us.

When: only when :func:`route` finds nothing watching: not under torch.compile (dynamo),
the JIT tracer, a dispatch mode (make_fx, fake tensors, functionalisation, opcheck's
checks, a user's ``TorchDispatchMode``), a torch function mode or a functorch transform,
and every tensor a plain ``torch.Tensor`` or ``Parameter`` (no subclass) off the meta
device (the ops' fake kernels serve meta tensors). Everything else calls the registered
ops, which stay the contract: opcheck, ``torch.compile(fullgraph=True)``.

Same results: each family's eager ``Function`` and its op call the same forward and
gradient functions on the same arrays with the same arguments (the op decodes them from its
schema, the eager path takes them from the call's cached decoding).
"""

from __future__ import annotations

import contextlib
import functools

import torch

_PLAIN = (torch.Tensor, torch.nn.Parameter)
_enabled = True
# torch's state queries, bound once (each ``torch._C._x`` is two attribute lookups per call)
_dispatch_modes, _function_modes = torch._C._len_torch_dispatch_stack, torch._C._is_torch_function_mode_enabled
_transforms, _tracing_state = torch._C._are_functorch_transforms_active, torch._C._get_tracing_state
_wrapped, _grad_enabled = torch._C._functorch.is_functorch_wrapped_tensor, torch.is_grad_enabled


def route(*tensors):
    """How a call on ``tensors`` (None allowed) runs: None on the registered ops (something
    watches, see above), else on the eager path, True when autograd must record it. One
    function for both questions: each Python frame costs a tiny call about 0.1-0.2 us."""
    if not _enabled or torch.compiler.is_compiling() or _dispatch_modes() or _function_modes() or _transforms() \
            or _tracing_state() is not None:
        return None
    enabled = _grad_enabled()
    record = False
    for t in tensors:
        if t is not None:
            if type(t) not in _PLAIN or t.is_meta or _wrapped(t):
                return None
            record = record or (enabled and t.requires_grad)
    return record


def applier(function: type[torch.autograd.Function]):
    """``function.apply`` without its Python wrapper: the wrapper binds default arguments
    for ``setup_context`` style functions (ours define ``forward(ctx, ...)``), and unwraps
    dead functorch wrappers (:func:`route` has sent those to the ops) with a pytree pass
    costing about 1.5 us."""
    return torch._C._FunctionBase.__dict__["apply"].__get__(None, function)


def first_order(backward):
    """An eager Function's ``backward`` whose gradients, when autograd records them
    (``create_graph=True``), raise on being differentiated, as the ops' gradient ops do:
    fastconv has no second derivatives."""
    @functools.wraps(backward)
    def wrapper(ctx, *grad_outputs):
        grads = backward(ctx, *grad_outputs)
        if not torch.is_grad_enabled():  # autograd enables it in a backward only for create_graph
            return grads
        recorded = iter(_NoDoubleBackward.apply(*(g.detach().requires_grad_() for g in grads if g is not None)))
        return tuple(None if g is None else next(recorded) for g in grads)

    return wrapper


class _NoDoubleBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, *grads):
        return tuple(g.view_as(g) for g in grads)

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError("fastconv.torch: the gradient of a gradient (double backward) is not implemented")


@contextlib.contextmanager
def disabled():
    """Every call takes the registered ops (the tests run both paths)."""
    global _enabled
    saved, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = saved
