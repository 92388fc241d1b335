"""TensorFlow: polyloss's own array API namespace (``_tensorflow_namespace``), ``tf.GradientTape``
for gradients, ``tf.stop_gradient``; works eagerly and inside ``tf.function``.

``custom_vjp`` is ``tf.custom_gradient`` with the residuals recomputed in the gradient function
(see its docstring).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from ._base import Backend  # noqa: E402


def _exclude_polyloss_from_autograph() -> None:
    """Put polyloss on AutoGraph's do-not-convert list, beside numpy and keras.

    Inside ``tf.function`` AutoGraph rewrites every Python function it meets unless its module is
    listed; polyloss has no tensor-dependent Python control flow, so rewriting it only costs tracing
    time (and warnings). The list is internal to TensorFlow: if it moves, conversion stays on.
    """
    try:
        from tensorflow.python.autograph.core import config
    except ImportError:  # pragma: no cover - a TensorFlow without the module
        return
    rule = config.DoNotConvert("polyloss")
    if not any(getattr(r, "_prefix", None) == "polyloss" for r in config.CONVERSION_RULES):
        config.CONVERSION_RULES = (rule, *config.CONVERSION_RULES)


_exclude_polyloss_from_autograph()


class TensorFlowBackend(Backend):
    name = "tensorflow"
    has_autograd = True
    modes = ("eager", "function")

    def is_array(self, x) -> bool:
        return isinstance(x, (tf.Tensor, tf.Variable))

    @property
    def namespace(self):
        from . import _tensorflow_namespace

        return _tensorflow_namespace

    def device(self, x):
        return x.device or None

    def asarray(self, obj, *, like, dtype=None, name="an input"):
        if isinstance(obj, tf.Variable):
            obj = tf.convert_to_tensor(obj)  # a read that the tape differentiates to the variable
        return super().asarray(obj, like=like, dtype=dtype, name=name)

    def shape(self, x):
        """Static dimensions as ints; unknown ones (``tf.function`` with ``None`` in its signature,
        Keras ``fit``) as 0-d tensors from ``tf.shape``."""
        static = x.shape.as_list()
        if None not in static:
            return tuple(static)
        dynamic = tf.shape(x, out_type=tf.int64)
        return tuple(d if d is not None else dynamic[i] for i, d in enumerate(static))

    def index_dtype(self):
        return tf.int64

    def _from_host(self, obj, *, like, dtype=None):
        device = self.device(like)
        value = np.asarray(obj)
        if dtype is not None and np.issubdtype(value.dtype, np.floating):
            value = value.astype(tf.as_dtype(dtype).as_numpy_dtype)
        if device:
            with tf.device(device):
                return tf.constant(value)
        return tf.constant(value)

    # --- autograd -----------------------------------------------------------------------------
    def stop_gradient(self, x):
        return tf.stop_gradient(x)

    def value_and_grad(self, f: Callable, argnums: int | Sequence[int] = 0) -> Callable:
        nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)

        def vg(*args):
            args = [tf.convert_to_tensor(a) if i in nums and not isinstance(a, tf.Variable) else a
                    for i, a in enumerate(args)]
            with tf.GradientTape() as tape:
                for i in nums:
                    tape.watch(args[i])
                value = f(*args)
            grads = tape.gradient(value, [args[i] for i in nums],
                                  unconnected_gradients=tf.UnconnectedGradients.ZERO)
            grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]
            return value, grads[0] if isinstance(argnums, int) else tuple(grads)

        return vg

    def custom_vjp(self, fwd: Callable, bwd: Callable) -> Callable:
        """``tf.custom_gradient`` around ``fwd``; inside a graph, ``fwd`` and ``bwd`` are compiled by XLA.

        - In a graph TensorFlow runs every op as its own kernel; XLA fuses the kernel's element-wise
          work into its row reductions, as ``jax.jit`` does. Eagerly the plain ops run (an XLA
          compilation per new shape would cost more than it saves). ``POLYLOSS_TF_XLA=0`` turns XLA
          off, for devices without it.
        - The gradient function recomputes the residuals from the inputs. TensorFlow does not record
          the forward pass of a custom gradient, so residuals kept from it would be constants to an
          outer tape and second derivatives would be silently wrong; recomputed, they are
          differentiable.
        - Each argument's cotangent is its own call, so that inside ``tf.function`` the ones nobody
          asks for (the labels', usually) are pruned from the graph.
        """
        use_xla = os.environ.get("POLYLOSS_TF_XLA", "1") != "0"
        compiled: dict = {}

        def maybe_compiled(key, fn):
            if not use_xla or tf.executing_eagerly():
                return fn
            if key not in compiled:
                compiled[key] = tf.function(fn, jit_compile=True, autograph=False, reduce_retracing=True)
            return compiled[key]

        def cotangent(i: int, needs: tuple):
            only = tuple(j == i for j in range(len(needs)))
            return maybe_compiled((i, needs), lambda xs, res, g: bwd(tuple(xs), tuple(res), g, only)[i])

        def f(*args):
            needs = tuple(a is not None and a.dtype.is_floating for a in args)

            @tf.custom_gradient
            def call(*xs):
                def grad_fn(g):
                    res = maybe_compiled("fwd", fwd)(*xs)[1]
                    return [cotangent(i, needs)(list(xs), list(res), g) if n else None
                            for i, n in enumerate(needs)]

                return maybe_compiled("fwd", fwd)(*xs)[0], grad_fn

            return call(*args)

        return f

    # --- gradients of a user's function, nested in the user's own differentiation ---------------
    # (the gradient-based regularisers; see Backend.value_and_grad_nested)

    def value_and_grad_nested(self, f, argnums=0, *, create_graph=False):
        """A ``tf.GradientTape`` of its own: the tapes of the caller record the forward pass and the
        gradient computation too (nested tapes), so the value and, with ``create_graph``, the gradient
        are differentiable by them; ``create_graph=False`` stops the gradient. A non-scalar value is
        summed (``tape.gradient``'s rule for non-scalar targets)."""
        nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)

        def vg(*args):
            args = [tf.convert_to_tensor(a) if i in nums else a for i, a in enumerate(args)]
            with tf.GradientTape() as tape:
                for i in nums:
                    tape.watch(args[i])
                value = f(*args)
            grads = tape.gradient(value, [args[i] for i in nums], unconnected_gradients=tf.UnconnectedGradients.ZERO)
            # a gather (an embedding lookup) gives IndexedSlices: made dense, an array like any other
            grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]
            if not create_graph:
                grads = [tf.stop_gradient(g) for g in grads]
            return value, grads[0] if isinstance(argnums, int) else tuple(grads)

        return vg

    def random_normal(self, key, like, *, dtype):
        """``key``: None (``tf.random.normal``, a new draw every call), an int seed or an integer tensor
        (``tf.random.stateless_normal``: the same seed gives the same numbers, eagerly and in graphs;
        pass the step number to vary it), or a ``tf.random.Generator``."""
        shape = tf.shape(like)
        if key is None:
            return tf.random.normal(shape, dtype=dtype)
        if isinstance(key, tf.random.Generator):
            return key.normal(shape, dtype=dtype)
        if isinstance(key, (bool, np.bool_)) or not (
                isinstance(key, (int, np.integer)) or (self.is_array(key) and key.dtype.is_integer)):
            raise TypeError(f"for TensorFlow tensors, key must be None, an int seed, an integer tensor or a "
                            f"tf.random.Generator, got {key!r}")
        seed = tf.cast(tf.reshape(key, [-1]), tf.int64)
        seed = tf.concat([seed, tf.zeros([2], tf.int64)], axis=0)[:2]  # a scalar seed s becomes [s, 0]
        return tf.random.stateless_normal(shape, seed=seed, dtype=dtype)

    # --- data-dependent checks and scatter ---------------------------------------------------------
    def softplus(self, x):
        # one fused kernel; accurate at both ends (exp(x) far below 0, x far above), gradient σ(x)
        return tf.math.softplus(x)

    def log_scan(self, x, *, reverse=False):
        return tf.math.cumulative_logsumexp(x, axis=-1, reverse=reverse)

    def scan(self, step, init, xs, *, reverse=False):
        """Eagerly the Python loop of the base class; inside a graph (``tf.function``, Keras) a
        ``tf.while_loop`` over ``TensorArray``s, so that the length may be unknown until the graph
        runs and the loop is never unrolled. The first step is taken before the loop, to learn the
        structure, dtypes and shapes of ``carry`` and ``y`` (as ``jax.lax.scan`` traces ``step``
        once)."""
        if tf.executing_eagerly():
            return super().scan(step, init, xs, reverse=reverse)
        x_leaves, rebuild_x = self.tree_flatten(xs)
        if not x_leaves:
            raise ValueError("scan needs at least one array in xs")
        x_leaves = [tf.convert_to_tensor(leaf) for leaf in x_leaves]
        length = tf.shape(x_leaves[0])[0]
        inputs = [tf.TensorArray(leaf.dtype, size=length, element_shape=leaf.shape[1:]).unstack(leaf)
                  for leaf in x_leaves]

        def position(i):
            return length - 1 - i if reverse else i

        def read(i):
            return rebuild_x([ta.read(position(i)) for ta in inputs])

        carry, y = step(init, read(tf.constant(0)))
        carry_leaves, rebuild_carry = self.tree_flatten(carry)
        y_leaves, rebuild_y = self.tree_flatten(y)
        y_leaves = [tf.convert_to_tensor(leaf) for leaf in y_leaves]
        outputs = [tf.TensorArray(leaf.dtype, size=length, element_shape=leaf.shape).write(position(0), leaf)
                   for leaf in y_leaves]

        def body(i, carry_leaves, outputs):
            new_carry, new_y = step(rebuild_carry(list(carry_leaves)), read(i))
            new_leaves = [tf.convert_to_tensor(leaf) for leaf in self.tree_flatten(new_carry)[0]]
            outputs = [ta.write(position(i), leaf) for ta, leaf in zip(outputs, self.tree_flatten(new_y)[0])]
            return i + 1, new_leaves, outputs

        carry_leaves = [tf.convert_to_tensor(leaf) for leaf in carry_leaves]
        _, carry_leaves, outputs = tf.while_loop(
            lambda i, *_: i < length, body, (tf.constant(1), carry_leaves, outputs),
            shape_invariants=(tf.TensorShape([]), [leaf.shape for leaf in carry_leaves],
                              [tf.TensorShape(None) for _ in outputs]),
            maximum_iterations=length,
        )
        ys = rebuild_y([ta.stack() for ta in outputs]) if y_leaves else rebuild_y([])
        return rebuild_carry(list(carry_leaves)), ys

    def is_eager(self, x) -> bool:
        return tf.executing_eagerly() and not tf.is_symbolic_tensor(x)

    def may_need_grad(self, x):
        return True  # any active GradientTape may watch it, and TensorFlow cannot tell

    def index_mask(self, indices, n, valid):
        if indices.shape[-1] == 0:  # no listed class
            return tf.zeros(tf.concat([tf.shape(indices)[:-1], [n]], axis=0), dtype=tf.bool)
        lead = tf.shape(indices)[:-1]
        target = tf.reshape(tf.where(valid, indices, tf.cast(n, indices.dtype)), [-1, tf.shape(indices)[-1]])
        rows = tf.shape(target, out_type=target.dtype)[0]
        row_ids = tf.broadcast_to(tf.range(rows, dtype=target.dtype)[:, None], tf.shape(target))
        coords = tf.reshape(tf.stack([row_ids, target], axis=-1), [-1, 2])
        grid = tf.zeros(tf.stack([rows, tf.cast(n + 1, target.dtype)]), dtype=tf.bool)
        hits = tf.tensor_scatter_nd_update(grid, coords, tf.ones(tf.shape(coords)[:1], tf.bool))
        return tf.reshape(hits[:, :n], tf.concat([lead, tf.reshape(tf.cast(n, lead.dtype), [1])], axis=0))

    # --- multi-task learning (polyloss.multitask) ---------------------------------------------------
    def task_gradients(self, losses, params, *, tape=None, create_graph=False):
        """``tape.gradient`` once per task. ``losses`` computed under ``tape`` (a persistent
        ``tf.GradientTape``), or a function ``params -> losses`` run under a persistent tape of its own
        that watches every tensor of ``params``. A [K] tensor of losses is differentiated with one-hot
        output gradients (a slice taken outside the tape would not be recorded). Under an outer tape the
        gradients are recorded and differentiable (``create_graph`` has nothing to do)."""
        leaves, rebuild = self.tree_flatten(params)
        own = None
        if callable(losses):
            own = tf.GradientTape(persistent=True)
            with own:
                for leaf in leaves:
                    if isinstance(leaf, tf.Tensor):  # variables (Keras' too) are watched already
                        own.watch(leaf)
                losses = losses(params)
            tape = own
        elif tape is None:
            raise ValueError("for TensorFlow, pass tape= (the persistent tf.GradientTape that recorded the losses) "
                             "or losses as a function of params")
        elif not getattr(tape, "_persistent", True):
            raise ValueError("tape must be persistent (tf.GradientTape(persistent=True)): one gradient per task")
        if isinstance(losses, (list, tuple)):
            targets = [(loss, None) for loss in losses]
        else:
            k = losses.shape[0]
            targets = [(losses, tf.one_hot(i, k, dtype=losses.dtype)) for i in range(k)]
        grads = []
        for loss, cotangent in targets:
            parts = tape.gradient(loss, leaves, output_gradients=cotangent,
                                  unconnected_gradients=tf.UnconnectedGradients.ZERO)
            grads.append(rebuild([tf.convert_to_tensor(g) for g in parts]))
        if own is not None:
            del own
        return grads

    def random_permutations(self, key, n, count, *, like):
        """``key``: a ``tf.random.Generator`` (its state advances, in graphs too), a ``[2]`` integer seed
        tensor (``tf.random.stateless_uniform``), or what the base class takes."""
        if isinstance(key, tf.random.Generator):
            noise = key.uniform((count, n))
        elif isinstance(key, (tf.Tensor, tf.Variable)) and key.dtype.is_integer:
            noise = tf.random.stateless_uniform((count, n), seed=key)
        else:
            return super().random_permutations(key, n, count, like=like)
        return tf.cast(tf.argsort(noise, axis=1), tf.int64)

    # --- conformance support ---------------------------------------------------------------------------
    def devices(self):
        out = [("cpu", "/CPU:0")]
        out += [(f"gpu:{i}", f"/GPU:{i}") for i, _ in enumerate(tf.config.list_physical_devices("GPU"))]
        return out

    def dtypes(self, device=None):
        return ("float64", "float32", "float16", "bfloat16")

    def dtype(self, name):
        return getattr(tf, name)

    def from_numpy(self, a, *, dtype=None, device=None):
        a = np.asarray(a)
        with tf.device(device or "/CPU:0"):
            t = tf.constant(a)
            if dtype is not None and np.issubdtype(a.dtype, np.floating):
                t = tf.cast(t, self.dtype(dtype))
            return tf.identity(t)

    def to_numpy(self, x):
        if x.dtype.is_floating:
            x = tf.cast(x, tf.float64)
        return x.numpy()

    def compile(self, f, mode):
        if mode == "function":
            return tf.function(f)
        return super().compile(f, mode)

    # --- performance hooks (see Backend) ------------------------------------------------------------
    def bitcast(self, x, dtype):
        return tf.bitcast(x, dtype)
