"""JAX: ``jax.numpy`` is the namespace, ``jax.custom_vjp`` and ``jax.value_and_grad`` the hooks.

float64 needs ``jax.config.update("jax_enable_x64", True)``; without it JAX has no float64
arrays, and the conformance matrix leaves the float64 rows out for JAX (reported, not passed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ._base import Backend


class JaxBackend(Backend):
    name = "jax"
    has_autograd = True
    modes = ("eager", "jit")

    def is_array(self, x) -> bool:
        return isinstance(x, jax.Array)

    @property
    def namespace(self):
        return jnp

    def device(self, x):
        """The single device of ``x``; None for tracers and for arrays sharded over several devices,
        whose secondary inputs are then left uncommitted for JAX to place."""
        if isinstance(x, jax.core.Tracer):
            return None
        devices = x.devices()
        return next(iter(devices)) if len(devices) == 1 else None

    def _from_host(self, obj, *, like, dtype=None):
        out = jnp.asarray(obj)
        if dtype is not None and jnp.issubdtype(out.dtype, jnp.floating):
            out = out.astype(dtype)
        device = self.device(like)
        return out if device is None else jax.device_put(out, device)

    # --- autograd -----------------------------------------------------------------------------
    def stop_gradient(self, x):
        return jax.lax.stop_gradient(x)

    def value_and_grad(self, f: Callable, argnums: int | Sequence[int] = 0) -> Callable:
        return jax.value_and_grad(f, argnums=argnums)

    def custom_vjp(self, fwd: Callable, bwd: Callable) -> Callable:
        @jax.custom_vjp
        def f(*args):
            return fwd(*args)[0]

        def f_fwd(*args):
            out, res = fwd(*args)
            return out, (args, res)

        def f_bwd(saved, g):
            args, res = saved
            needs = tuple(a is not None and jnp.issubdtype(a.dtype, jnp.floating) for a in args)
            return tuple(bwd(args, res, g, needs))

        f.defvjp(f_fwd, f_bwd)
        # compiled as one computation: eager callers get one cached XLA call per shape instead of an
        # op-by-op dispatch; inside an outer jit/grad it is simply inlined
        return jax.jit(f)

    # --- gradients of a user's function, nested in the user's own differentiation ---------------
    # (the gradient-based regularisers; see Backend.value_and_grad_nested)

    def value_and_grad_nested(self, f, argnums=0, *, create_graph=False):
        """``jax.vjp`` with a cotangent of ones: inside an outer ``jax.grad`` / ``jax.jit`` both the value
        and the gradient are traced like any other function of the weights; ``create_graph=False`` stops
        the gradient."""
        nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)

        def vg(*args):
            def of_differentiated(*diff):
                full = list(args)
                for i, a in zip(nums, diff):
                    full[i] = a
                return f(*full)

            value, pullback = jax.vjp(of_differentiated, *[args[i] for i in nums])
            grads = pullback(jnp.ones_like(value))
            if not create_graph:
                grads = tuple(jax.lax.stop_gradient(g) for g in grads)
            return value, grads[0] if isinstance(argnums, int) else tuple(grads)

        return vg

    def random_normal(self, key, like, *, dtype):
        if key is None:
            raise TypeError("JAX needs an explicit PRNG key for the random start: pass key=jax.random.key(seed) "
                            "(and a fresh one every step: key, subkey = jax.random.split(key))")
        if not isinstance(key, jax.Array):
            raise TypeError(f"for JAX arrays, key must be a JAX PRNG key (jax.random.key(seed)), got {key!r}")
        out = jax.random.normal(key, tuple(like.shape), dtype=dtype)
        device = self.device(like)
        return out if device is None else jax.device_put(out, device)

    def log_scan(self, x, *, reverse=False):
        return jax.lax.cumlogsumexp(x, axis=x.ndim - 1, reverse=reverse)

    def scan(self, step, init, xs, *, reverse=False):
        return jax.lax.scan(step, init, xs, reverse=reverse)

    def tree_flatten(self, tree):
        leaves, treedef = jax.tree_util.tree_flatten(tree)
        return leaves, lambda new: jax.tree_util.tree_unflatten(treedef, list(new))

    def all_gather(self, x, group):
        """``group`` is the axis name (or a tuple of names) of the enclosing ``shard_map`` / ``pmap``;
        ``lax.all_gather``'s transpose sums the cotangents back onto each device's own rows."""
        if not isinstance(group, (str, tuple)):
            raise TypeError("for JAX arrays, gather is the axis name (or a tuple of names) of the enclosing "
                            f"shard_map / pmap over which to gather, got {group!r}")
        return jax.lax.all_gather(x, group, axis=0, tiled=True), jax.lax.axis_index(group)

    def all_reduce(self, x, group):
        """``group``: the axis name (or names) of the enclosing ``shard_map`` / ``pmap``."""
        if not isinstance(group, (str, tuple)):
            raise TypeError(f"for JAX arrays, group is the axis name of the enclosing shard_map / pmap, got {group!r}")
        return jax.lax.psum(x, group)

    def all_gather_varying(self, x, group):
        """Under SPMD every device holds the same shape. The rows are placed into zeros at this
        device's offset and summed with ``psum``: the result is typed as replicated, so a
        ``shard_map`` can return it with ``out_specs=P()`` (``lax.all_gather``'s result is typed as
        varying across the axis)."""
        if not isinstance(group, (str, tuple)):
            raise TypeError(f"for JAX arrays, group is the axis name of the enclosing shard_map / pmap, got {group!r}")
        rows = x.shape[0]
        full = jnp.zeros((jax.lax.axis_size(group) * rows,) + tuple(x.shape[1:]),
                         dtype=jnp.int32 if x.dtype == jnp.bool_ else x.dtype)
        placed = jax.lax.dynamic_update_slice_in_dim(full, x.astype(full.dtype),
                                                     jax.lax.axis_index(group) * rows, axis=0)
        gathered = jax.lax.psum(placed, group)
        return gathered != 0 if x.dtype == jnp.bool_ else gathered

    # --- data-dependent checks and scatter ---------------------------------------------------------
    def is_eager(self, x) -> bool:
        return not isinstance(x, jax.core.Tracer)

    def may_need_grad(self, x):
        return isinstance(x, jax.core.Tracer)

    def index_mask(self, indices, n, valid):
        lead, k = tuple(indices.shape[:-1]), indices.shape[-1]
        rows = math.prod(lead)
        target = jnp.where(valid, indices, n).reshape(rows, k)
        row_ids = jnp.arange(rows)[:, None]  # a 2-D scatter: no flat index that could overflow int32
        mask = jnp.zeros((rows, n + 1), dtype=bool).at[row_ids, target].set(True)
        return mask.reshape(lead + (n + 1,))[..., :n]

    # --- multi-task learning (polyloss.multitask) ---------------------------------------------------
    def task_gradients(self, losses, params, *, tape=None, create_graph=False):
        """``jax.jacrev`` of ``losses``, a function ``params -> K losses`` (a [K] array or a sequence of
        scalars): one vector-Jacobian product per task, vmapped; the Jacobian's leaves have a leading
        task axis, split into K trees. Differentiable and jit-able as any JAX function
        (``create_graph`` has nothing to do)."""
        if tape is not None:
            raise ValueError("tape= is for TensorFlow; JAX differentiates functions")
        if not callable(losses):
            raise TypeError("for JAX, losses must be a function of params returning the K losses (JAX "
                            f"differentiates functions, not values), got {type(losses).__name__}")

        def stacked(p):
            out = losses(p)
            return jnp.stack([jnp.reshape(x, ()) for x in out]) if isinstance(out, (list, tuple)) else out

        jacobian = jax.jacrev(stacked)(params)
        leaves, treedef = jax.tree_util.tree_flatten(jacobian)
        k = leaves[0].shape[0]
        return [jax.tree_util.tree_unflatten(treedef, [leaf[i] for leaf in leaves]) for i in range(k)]

    def random_permutations(self, key, n, count, *, like):
        """``key``: a JAX PRNG key (``jax.random.key`` or ``PRNGKey``; traced under ``jit``), or what the
        base class takes."""
        if isinstance(key, jax.Array) and (jnp.issubdtype(key.dtype, jax.dtypes.prng_key) or key.shape == (2,)):
            keys = jax.random.split(key, count)
            return jax.vmap(lambda k: jax.random.permutation(k, n))(keys)
        return super().random_permutations(key, n, count, like=like)

    # --- performance hooks (see Backend) ------------------------------------------------------------
    def bitcast(self, x, dtype):
        return jax.lax.bitcast_convert_type(x, dtype)

    # --- conformance support ---------------------------------------------------------------------------
    def prepare_conformance(self):
        """float64 rows need ``jax_enable_x64``, a process-wide setting: ``polyloss check`` and the
        test suite turn it on; library calls never do."""
        jax.config.update("jax_enable_x64", True)

    def devices(self):
        out = [("cpu", jax.devices("cpu")[0])]
        try:
            gpus = jax.devices("gpu")
        except RuntimeError:
            gpus = []
        out += [(f"gpu:{d.id}", d) for d in gpus]
        return out

    def dtypes(self, device=None):
        names = ("float32", "float16", "bfloat16")
        return (("float64",) + names) if jax.config.jax_enable_x64 else names

    def dtype(self, name):
        return getattr(jnp, name)

    def from_numpy(self, a, *, dtype=None, device=None):
        a = np.asarray(a)
        out = jnp.asarray(a, dtype=self.dtype(dtype) if dtype and np.issubdtype(a.dtype, np.floating) else None)
        return jax.device_put(out, device) if device is not None else out

    def to_numpy(self, x):
        a = np.asarray(x)
        return a.astype(np.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a

    def compile(self, f, mode):
        if mode == "jit":
            return jax.jit(f)
        return super().compile(f, mode)
