"""The adapter protocol, with the defaults that hold for frameworks without autograd."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import _tree

# dtype names used across the conformance matrix, in the order rows are printed
DTYPE_NAMES = ("float64", "float32", "float16", "bfloat16")

# elements per block for row-wise kernels on an eager CPU backend: temporaries of ~2 MiB stay in
# cache and are recycled by malloc instead of being page-faulted in afresh for every intermediate
CPU_BLOCK_ELEMENTS = 1 << 19


def cpu_block_rows(x) -> int:
    classes = x.shape[-1] if x.ndim else 1
    return max(1, CPU_BLOCK_ELEMENTS // max(int(classes), 1))


class Backend:
    """One framework's adapter. Subclasses override what their framework can do.

    ``custom_vjp(fwd, bwd)`` follows JAX's convention, with the inputs passed back to ``bwd``:
    ``fwd(*args) -> (out, residuals)`` and ``bwd(args, residuals, g, needs) -> tuple`` with one
    cotangent per positional argument (None for "no gradient"). ``needs`` is a tuple of booleans
    saying which arguments need a cotangent (floating arrays; adapters that cannot tell more pass
    True for every floating argument). The function returned is differentiable to any order: the
    adapters differentiate through ``bwd``, recomputing ``residuals`` from ``args`` where the
    framework needs it (TensorFlow always, torch for ``create_graph``). Library code never calls
    ``custom_vjp`` directly: :class:`polyloss._kernels.Kernel` does, once per kernel and backend.
    """

    name: str = "abstract"
    has_autograd: bool = False
    #: True for frameworks that run only on a GPU (CuPy): left out of the matrix every machine runs
    #: (``polyloss.backends.GPU_BACKEND_NAMES`` lists them without importing them)
    gpu_only: bool = False
    modes: tuple[str, ...] = ("eager",)

    # --- arrays and namespace -------------------------------------------------------------
    def is_array(self, x) -> bool:
        raise NotImplementedError

    @property
    def namespace(self):
        raise NotImplementedError

    def device(self, x):
        import array_api_compat

        return array_api_compat.device(x)

    def asarray(self, obj, *, like, dtype=None, name: str = "an input"):
        """Convert a secondary input (Python scalar/list, NumPy array, or an array of this
        framework) to this framework, on ``like``'s device; floating values take ``dtype``.
        ``name`` names the argument in error messages."""
        xp = self.namespace
        if not self.is_array(obj):
            host = np.asarray(obj)
            if host.dtype.kind not in "biuf":  # strings, objects, complex, dates
                raise TypeError(f"{name} must hold real numbers or booleans, got dtype {host.dtype}")
            return self._from_host(host, like=like, dtype=dtype)
        if dtype is not None and xp.isdtype(obj.dtype, "real floating") and obj.dtype != dtype:
            obj = xp.astype(obj, dtype)
        return obj

    def _from_host(self, obj: np.ndarray, *, like, dtype=None):
        xp = self.namespace
        out = xp.asarray(obj, device=self.device(like))
        if dtype is not None and xp.isdtype(out.dtype, "real floating"):
            out = xp.astype(out, dtype)
        return out

    def shape(self, x) -> tuple:
        """``x``'s shape for arithmetic and reshapes: ints, and, for a dimension known only when
        the graph runs (TensorFlow with unknown dimensions), a 0-d integer array."""
        return tuple(x.shape)

    def index_dtype(self):
        """The namespace's default indexing dtype (int64; int32 for JAX without x64)."""
        return self.namespace.__array_namespace_info__().default_dtypes()["indexing"]

    # --- autograd ---------------------------------------------------------------------------
    def stop_gradient(self, x):
        return x

    def _no_autograd(self, what: str):
        return TypeError(
            f"{what} needs automatic differentiation, which the {self.name} backend does not have; "
            "use torch, jax or tensorflow arrays"
        )

    def value_and_grad(self, f: Callable, argnums: int | Sequence[int] = 0) -> Callable:
        raise self._no_autograd("value_and_grad")

    def grad(self, f: Callable, argnums: int | Sequence[int] = 0) -> Callable:
        vg = self.value_and_grad(f, argnums)

        def g(*args):
            return vg(*args)[1]

        return g

    def custom_vjp(self, fwd: Callable, bwd: Callable) -> Callable:
        def f(*args):
            return fwd(*args)[0]

        return f

    # --- gradients of a user's function, nested in the user's own differentiation --------------
    # (added for the gradient-based regularisers: FGM / PGD, the gradient penalty, VAT; the general
    # hook for any library function that differentiates a function the user passes in)

    def value_and_grad_nested(self, f: Callable, argnums: int | Sequence[int] = 0, *,
                              create_graph: bool = False) -> Callable:
        """``vg(*args) -> (f(*args), gradients)``: the gradient of ``Σ f(*args)`` (every entry of the
        output summed, so per-example losses ``[B]`` give ``∇ Σ_b ℓ_b``) with respect to ``args[argnums]``
        (one array for an int ``argnums``, a tuple otherwise), taken *inside* whatever differentiation
        the caller runs around it:

        - the value is ``f(*args)`` as if ``f`` had been called directly: an outer ``.backward()``,
          ``jax.grad`` or ``GradientTape`` differentiates it with respect to everything ``f`` closes
          over (a model's weights) and to the history of ``args``;
        - ``create_graph=False``: the gradients are constants (stop-gradient; FGM's and VAT's
          directions); ``create_graph=True``: they are differentiable functions of the arguments and of
          everything ``f`` closes over (double backprop: the gradient penalty).

        torch uses ``torch.autograd.grad`` (never ``.backward()``: a model's ``.grad`` buffers are
        untouched), JAX ``jax.vjp``, TensorFlow a ``tf.GradientTape``; all work eagerly and under
        ``jax.jit`` / ``tf.function``. Frameworks without autograd raise a TypeError naming those with it.
        """
        raise self._no_autograd("differentiating a function")

    def random_normal(self, key, like, *, dtype):
        """Standard normal samples shaped like ``like`` (on its device) in ``dtype``, from ``key``: a
        JAX PRNG key (required), a ``torch.Generator`` or None (torch's default generator), an int seed,
        a ``tf.random.Generator`` or None (TensorFlow). Frameworks without autograd have no use for it
        (its only user, VAT, differentiates) and raise a TypeError."""
        raise self._no_autograd("drawing random numbers for a gradient-based regulariser")

    # --- primitives with a fused native kernel (optional) ------------------------------------
    # ``polyloss._ops`` composes these; an adapter sets them when its framework has a kernel that is
    # as accurate as the array-API composition and faster. None means "compose it in polyloss._ops".

    #: ``softplus(x) = log(1 + e^x)``, accurate for every ``x``, with the derivative ``σ(x)`` (½ at 0).
    softplus: Callable | None = None

    #: ``log_scan(x, reverse)``: ``R_i = log Σ_{j<=i} e^{x_j}`` along the last axis (``Σ_{j>=i}`` when
    #: ``reverse``), the value only, accurate for any range of ``x``.
    log_scan: Callable | None = None

    #: True when :attr:`log_scan` has a correct gradient of its own (torch); otherwise
    #: ``polyloss._ops.logcumsumexp`` gives it the hand-written one.
    log_scan_differentiable: bool = False

    # --- fused log-sum-exp, value only (structured family: the CRF's forward algorithm) --------------
    #: ``logsumexp(x, axis, keepdims)``: ``log Σ exp(x)`` over ``axis``, ``-inf`` for a row of ``-inf``,
    #: accurate for any range of ``x``. Its gradient may be NaN on such a row (``exp(-inf - (-inf))``),
    #: so ``polyloss._ops.logsumexp`` uses it only where no gradient is recorded through ``x``
    #: (``may_need_grad(x)`` False): in eager PyTorch one fused call costs a third of the composition,
    #: which a Python loop of T steps (the CRF's forward algorithm) pays T times.
    logsumexp: Callable | None = None

    # --- fused maximum with its index (structured family: the CRF's Viterbi recursion) --------------
    #: ``max_with_indices(x, axis, keepdims) -> (values, indices)``: the maximum over ``axis`` and the index of its
    #: first occurrence (``argmax``'s tie rule), in one call. None: ``polyloss._ops.max_and_argmax``
    #: composes ``xp.max`` and ``xp.argmax`` (NumPy, array-api-strict, and compiled code, where XLA and
    #: TensorFlow's graph fuse the two). In eager PyTorch one ``torch.max(dim=)`` call replaces two, once
    #: per step of a Python loop of T steps.
    max_with_indices: Callable | None = None

    # --- loops -------------------------------------------------------------------------------------
    def scan(self, step: Callable, init, xs, *, reverse: bool = False):
        """``jax.lax.scan``'s contract: ``step(carry, x) -> (carry, y)`` applied along the leading axis
        of ``xs``; returns ``(carry, ys)`` with the ``y`` stacked along a new leading axis.

        ``init``/``carry`` and ``xs``/``y`` are arrays or tuples, lists and dicts of arrays (nested);
        ``y`` may be None (then ``ys`` is None). ``reverse`` walks ``xs`` from the end (``ys`` stays in
        the order of ``xs``). ``xs`` must have at least one step. Differentiable on every backend with
        autograd; inside ``jax.jit`` and ``tf.function`` it is a compiled loop, never unrolled.

        This default is a Python loop, for eager backends (NumPy, array-api-strict, eager torch).
        """
        xp = self.namespace
        leaves, rebuild = self.tree_flatten(xs)
        if not leaves:
            raise ValueError("scan needs at least one array in xs")
        length = leaves[0].shape[0]
        order = range(length - 1, -1, -1) if reverse else range(length)
        carry, outputs = init, []
        for t in order:
            carry, y = step(carry, rebuild([leaf[t, ...] for leaf in leaves]))
            outputs.append(y)
        if reverse:
            outputs.reverse()
        return carry, _tree.stack(xp, outputs)

    def tree_flatten(self, tree):
        """``(leaves, rebuild)`` of a tree of arrays (tuples, lists, dicts, None; see ``_tree``)."""
        return _tree.flatten(tree)

    # --- collectives ---------------------------------------------------------------------------
    def all_gather(self, x, group):
        """``(x_all, index)``: ``x`` from every process/device of ``group`` concatenated along axis 0
        (every member passes the same shape), and this member's position in ``group``. The gradient
        of ``x_all`` flows back to each member's own ``x`` (summed over the members that used it)."""
        raise TypeError(
            f"gathering across processes or devices needs torch.distributed (a process group) or a JAX "
            f"collective (the axis name of shard_map / pmap); the {self.name} backend has neither"
        )

    def all_reduce(self, x, group):
        """The sum of ``x`` over every process/device of ``group`` (every member passes the same
        shape); used for metric counts, so no gradient."""
        raise TypeError(
            f"reducing across processes or devices needs torch.distributed (a process group) or a JAX "
            f"collective (the axis name of shard_map / pmap); the {self.name} backend has neither"
        )

    def all_gather_varying(self, x, group):
        """``x`` of every member of ``group`` concatenated along axis 0, where members may hold
        different numbers of rows (metric values; no gradient)."""
        return self.all_reduce(x, group)  # the base has no collectives: the same TypeError

    # --- data-dependent checks and scatter ---------------------------------------------------
    def is_eager(self, x) -> bool:
        """True when ``x`` holds concrete values (not a tracer, a graph tensor or a compiled trace)."""
        return True

    def may_need_grad(self, x) -> bool:
        """Whether a gradient with respect to ``x`` may be asked for (False without autograd)."""
        return False

    def block_rows(self, x) -> int | None:
        """Rows per block for row-wise kernels on ``x [..., C]`` (see ``polyloss._ops.by_rows``), or
        None to process the whole array at once (the right choice on GPUs and in compiled code)."""
        return None

    def index_mask(self, indices, n: int, valid):
        """Boolean array ``[..., n]``: True at every ``indices[..., k]`` whose ``valid[..., k]`` holds.

        The array API has no scatter; this default compares against ``arange(n)`` and costs
        O(K n) per row. Adapters with a scatter override it (O(n + K) per row).
        """
        xp = self.namespace
        classes = xp.arange(n, dtype=indices.dtype, device=self.device(indices))
        hit = (indices[..., :, None] == classes) & valid[..., :, None]
        return xp.any(hit, axis=-2)


    # --- multi-task learning (polyloss.multitask) ---------------------------------------------------
    def task_gradients(self, losses, params, *, tape=None, create_graph: bool = False) -> list:
        """The gradients of K scalar losses with respect to ``params``: a list of K trees of ``params``'s
        structure (zeros where a loss does not reach a parameter).

        ``losses``: K scalar losses (a sequence or a [K] array) already computed from ``params`` (torch;
        TensorFlow under ``tape``, a persistent ``tf.GradientTape``), or a function ``params -> K
        losses`` (every framework with autograd; the only form for JAX). ``create_graph``: the
        gradients stay differentiable (torch; JAX and TensorFlow always are, under an outer
        transformation or tape). One backward pass per task; never writes ``.grad`` buffers."""
        raise self._no_autograd("task_gradients")

    def random_permutations(self, key, n: int, count: int, *, like):
        """``[count, n]`` integers: ``count`` independent uniformly random permutations of ``range(n)``,
        on ``like``'s device, drawn from ``key``. Here (and as a fallback in the adapters) ``key`` is a
        ``numpy.random.Generator`` or an int seed, drawn on the host when the call runs (inside a
        compiled function: once, when it is traced); adapters also take their framework's generators."""
        if isinstance(key, np.random.Generator):
            rng = key
        elif isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
            rng = np.random.default_rng(int(key))
        else:
            raise TypeError(f"key must be a numpy.random.Generator or an int seed for {self.name} arrays, "
                            f"got {type(key).__name__}")
        orders = np.stack([rng.permutation(n) for _ in range(count)]).astype(np.int64)
        return self._from_host(orders, like=like)

    # --- performance hooks (optional primitives; None where the framework has none) ------------------
    #: ``bitcast(x, dtype)``: the bits of ``x`` viewed as ``dtype`` of the same width (float32 <-> int32),
    #: without conversion. ``polyloss`` sorts float32 scores with their labels as packed int64 keys through
    #: it (one integer sort instead of an argsort and two gathers); without it, it argsorts.
    bitcast: Callable | None = None

    # --- fused sigmoid and log-softmax (optional; the eager-CPU kernels of the classification and
    # regulariser families, issue 17) ------------------------------------------------------------------
    #: ``sigmoid(x) = 1 / (1 + e^{-x})`` in one pass, within a few ulps of the exact value wherever it is a
    #: normal number; below the smallest normal (``x < -87.3`` in float32, ``-708.4`` in float64) it may
    #: return 0 (torch's does, where ``e^{-x}`` overflows). Used where the value enters a sum with larger terms
    #: or a product (the binary kernels); None: ``polyloss`` composes it from ``exp``.
    sigmoid: Callable | None = None

    #: ``log_softmax(x)`` over the last axis in one fused pass, ``x`` finite (callers check), accurate to
    #: a few ulps of the entry's magnitude, differentiable (its own fused backward is used, to any order);
    #: None: ``polyloss`` composes it (max, shift, exp, sum, log) inside a kernel with a hand-written gradient.
    log_softmax: Callable | None = None

    # --- conformance support -------------------------------------------------------------------
    def prepare_conformance(self) -> None:
        """Process-wide settings the conformance matrix needs (JAX's float64); nothing by default."""

    def supports(self, function: str) -> bool:
        """Whether the conformance matrix runs ``function`` on this backend (all, but for Dask)."""
        return True

    def devices(self) -> list[tuple[str, Any]]:
        """(label, device) pairs the conformance matrix runs on."""
        return [("cpu", None)]

    def dtypes(self, device=None) -> tuple[str, ...]:
        return ("float64", "float32")

    def dtype(self, name: str):
        return getattr(self.namespace, name)

    def from_numpy(self, a: np.ndarray, *, dtype: str | None = None, device=None):
        xp = self.namespace
        a = np.asarray(a)
        out = xp.asarray(a, device=device) if device is not None else xp.asarray(a)
        if dtype is not None:
            out = xp.astype(out, self.dtype(dtype))
        return out

    def to_numpy(self, x) -> np.ndarray:
        return np.asarray(x)

    def compile(self, f: Callable, mode: str) -> Callable:
        if mode != "eager":
            raise ValueError(f"the {self.name} backend has no {mode!r} mode; modes: {self.modes}")
        return f

    def __repr__(self) -> str:
        return f"<polyloss backend {self.name}>"
