"""PyTorch: array-api-compat's namespace, ``torch.autograd`` for gradients (never ``.backward()``,
which would write into a model's ``.grad``), ``autograd.Function`` for custom VJPs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from ._base import Backend, cpu_block_rows


class _CustomVJP(torch.autograd.Function):
    """``custom_vjp(fwd, bwd)`` for every kernel: one class, defined once (``torch.compile`` can
    trace it, and can't trace a class created on the fly), with ``fwd``/``bwd`` passed to ``apply``.
    The setup_context form, so that ``torch.func`` transforms work too."""

    generate_vmap_rule = True

    @staticmethod
    def forward(fwd, bwd, *args):
        out, res = fwd(*args)
        return (out, *res)

    @staticmethod
    def setup_context(ctx, inputs, output):
        fwd, bwd, *args = inputs
        _, *res = output
        ctx.mark_non_differentiable(*res)
        # no zero cotangents for the residual outputs (a [..., C] fill per call; issue 17)
        ctx.set_materialize_grads(False)
        ctx.kernel = (fwd, bwd)
        ctx.n_inputs = len(args)
        ctx.save_for_backward(*args, *res)

    @staticmethod
    def backward(ctx, g, *_):
        fwd, bwd = ctx.kernel
        if g is None:  # only residual outputs reached the loss: they carry no gradient
            return (None,) * (2 + ctx.n_inputs)
        saved = ctx.saved_tensors
        args, res = saved[: ctx.n_inputs], saved[ctx.n_inputs :]
        needs = tuple(ctx.needs_input_grad[2:])
        if torch.is_grad_enabled():
            # create_graph=True: recompute the residuals with autograd recording, so that the
            # gradient is a differentiable function of the inputs (higher-order derivatives)
            res = fwd(*args)[1]
        return (None, None, *bwd(args, res, g, needs))


class _AllGather(torch.autograd.Function):
    """All-gather along axis 0 whose backward all-reduces the cotangent and keeps this rank's rows:
    each rank's input receives the gradient of every rank's loss (``torch.distributed.all_gather``
    alone cuts the graph). Works on every backend with ``all_reduce`` (gloo, NCCL, MPI)."""

    @staticmethod
    def forward(ctx, x, group):
        import torch.distributed as dist

        parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, x.contiguous(), group=group)
        ctx.group, ctx.rows = group, x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, g):
        import torch.distributed as dist

        g = g.contiguous().clone()
        dist.all_reduce(g, op=dist.ReduceOp.SUM, group=ctx.group)
        start = dist.get_rank(ctx.group) * ctx.rows
        return g[start : start + ctx.rows], None


def _is_functorch_wrapped(x) -> bool:
    check = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", None)
    return bool(check(x)) if check is not None else False


def _argnums(argnums) -> tuple[int, ...]:
    return (argnums,) if isinstance(argnums, int) else tuple(argnums)


class TorchBackend(Backend):
    name = "torch"
    has_autograd = True
    modes = ("eager", "compile")

    def is_array(self, x) -> bool:
        return isinstance(x, torch.Tensor)

    @property
    def namespace(self):
        import array_api_compat.torch as xp

        return xp

    def device(self, x):
        return x.device

    def asarray(self, obj, *, like, dtype=None, name="an input"):
        if isinstance(obj, torch.Tensor) and obj.device != like.device:
            raise ValueError(
                f"{name} is on {obj.device} but the first array is on {like.device}; move both to the same device"
            )
        return super().asarray(obj, like=like, dtype=dtype, name=name)

    def _from_host(self, obj, *, like, dtype=None):
        out = torch.as_tensor(obj, device=like.device)
        if dtype is not None and out.is_floating_point():
            out = out.to(dtype)
        return out

    # --- autograd -----------------------------------------------------------------------------
    def stop_gradient(self, x):
        return x.detach()

    def value_and_grad(self, f: Callable, argnums: int | Sequence[int] = 0) -> Callable:
        """``f``'s value and its gradient with respect to ``args[argnums]``.

        An argument that already requires grad (an activation of a model, say) is differentiated
        in place and the gradient keeps its graph (``create_graph=True``), so it can enter a
        further loss (gradient penalty); otherwise a fresh leaf is made and the gradient is plain.
        """
        nums = _argnums(argnums)

        def vg(*args):
            args = list(args)
            connected = any(args[i].requires_grad for i in nums)
            for i in nums:
                if not args[i].requires_grad:
                    args[i] = args[i].detach().requires_grad_(True)
            with torch.enable_grad():
                value = f(*args)
                grads = torch.autograd.grad(
                    value, [args[i] for i in nums], create_graph=connected, allow_unused=True
                )
            grads = tuple(torch.zeros_like(args[i]) if g is None else g for i, g in zip(nums, grads))
            if not connected:
                value = value.detach()
            return value, grads[0] if isinstance(argnums, int) else grads

        return vg

    def custom_vjp(self, fwd: Callable, bwd: Callable) -> Callable:
        def f(*args):
            if not (torch.is_grad_enabled() and any(isinstance(a, torch.Tensor) and a.requires_grad for a in args)):
                return fwd(*args)[0]  # nothing to differentiate (inference, no_grad): no autograd node
            return _CustomVJP.apply(fwd, bwd, *args)[0]

        return f

    # --- gradients of a user's function, nested in the user's own differentiation ---------------
    # (the gradient-based regularisers; see Backend.value_and_grad_nested)

    def value_and_grad_nested(self, f, argnums=0, *, create_graph=False):
        """``torch.autograd.grad`` with ``retain_graph=True``, so that the caller can still call
        ``.backward()`` on the value (or on losses built from it) afterwards. An argument that requires
        grad (an activation of the model) is differentiated in place, keeping its history; another gets
        a fresh leaf. Under ``torch.no_grad()`` the gradient is still taken (grad mode is switched on
        for it) and the results are returned detached."""
        nums = _argnums(argnums)

        def vg(*args):
            args = list(args)
            for i in nums:
                if not args[i].requires_grad:
                    args[i] = args[i].detach().requires_grad_(True)
            recording = torch.is_grad_enabled()
            with torch.enable_grad():
                value = f(*args)
                inputs = [args[i] for i in nums]
                if value.requires_grad:
                    grads = torch.autograd.grad(value, inputs, grad_outputs=torch.ones_like(value),
                                                create_graph=create_graph and recording, retain_graph=True,
                                                allow_unused=True)
                else:  # f does not depend on anything differentiable
                    grads = (None,) * len(inputs)
            grads = tuple(torch.zeros_like(a) if g is None else g for a, g in zip(inputs, grads))
            if not recording:
                value = value.detach()
            return value, grads[0] if isinstance(argnums, int) else grads

        return vg

    def random_normal(self, key, like, *, dtype):
        if key is not None and not isinstance(key, torch.Generator):
            raise TypeError(f"for torch tensors, key must be a torch.Generator (on the tensors' device) or None "
                            f"(torch's default generator), got {key!r}")
        return torch.randn(tuple(like.shape), generator=key, dtype=dtype, device=like.device)

    # --- data-dependent checks and scatter ---------------------------------------------------------
    def is_eager(self, x) -> bool:
        if torch.compiler.is_compiling() or torch.jit.is_tracing():
            return False
        if _is_functorch_wrapped(x):  # inside torch.func.vmap / grad: values are not concrete
            return False
        return x.device.type != "meta"

    def may_need_grad(self, x):
        # under torch.no_grad / inference_mode nothing computed from x records a gradient
        return x.requires_grad and torch.is_grad_enabled()

    def softplus(self, x):
        # F.softplus returns x itself above the threshold: exact once e^{-x}/x is below half an ulp
        # (x > 20 in float32, x > 40 in float64); below it, log1p(exp(x)), accurate for x -> -inf
        threshold = 40.0 if x.dtype == torch.float64 else 20.0
        return torch.nn.functional.softplus(x, threshold=threshold)

    log_scan_differentiable = True  # torch.logcumsumexp has its own gradient

    # --- fused log-sum-exp, value only (structured family; see Backend.logsumexp) ---------------------
    def logsumexp(self, x, *, axis=-1, keepdims=False):
        return torch.logsumexp(x, dim=axis, keepdim=keepdims)

    # --- fused maximum with its index (structured family; see Backend.max_with_indices) --------------
    def max_with_indices(self, x, *, axis=-1, keepdims=False):
        # the index of the first maximum among ties, as torch.argmax (tests/test_structured_fast.py checks it)
        values, indices = torch.max(x, dim=axis, keepdim=keepdims)
        return values, indices

    def log_scan(self, x, *, reverse=False):
        if reverse:
            return torch.logcumsumexp(x.flip(-1), dim=-1).flip(-1)
        return torch.logcumsumexp(x, dim=-1)

    def all_gather(self, x, group):
        """``group``: a ``torch.distributed`` process group, or True for the default (world) group.
        Every member must call the loss, and its backward, with the same number of rows."""
        import torch.distributed as dist

        if group is True:
            group = dist.group.WORLD
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("gather needs an initialised torch.distributed process group "
                               "(torch.distributed.init_process_group)")
        if not isinstance(group, dist.ProcessGroup):
            raise TypeError(f"for torch tensors, gather is a torch.distributed ProcessGroup or True (the default "
                            f"group), got {group!r}")
        if self.is_eager(x):
            rows = [torch.zeros(1, dtype=torch.int64, device=x.device) for _ in range(dist.get_world_size(group))]
            dist.all_gather(rows, torch.tensor([x.shape[0]], dtype=torch.int64, device=x.device), group=group)
            if len({int(r) for r in rows}) != 1:
                raise ValueError(f"every process must pass the same number of rows to gather; got "
                                 f"{[int(r) for r in rows]} (rank {dist.get_rank(group)} has {x.shape[0]})")
        return _AllGather.apply(x, group), dist.get_rank(group)

    def _group(self, group):
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("reducing across processes needs an initialised torch.distributed process group "
                               "(torch.distributed.init_process_group)")
        if group is True:
            return dist.group.WORLD
        if not isinstance(group, dist.ProcessGroup):
            raise TypeError(f"for torch tensors, group is a torch.distributed ProcessGroup or True (the default "
                            f"group), got {group!r}")
        return group

    def all_reduce(self, x, group):
        import torch.distributed as dist

        group = self._group(group)
        out = x.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    def all_gather_varying(self, x, group):
        import torch.distributed as dist

        group = self._group(group)
        size = dist.get_world_size(group)
        rows = torch.tensor([x.shape[0]], dtype=torch.int64, device=x.device)
        counts = [torch.zeros_like(rows) for _ in range(size)]
        dist.all_gather(counts, rows, group=group)
        counts = [int(c) for c in counts]
        longest = max(counts)
        padded = torch.zeros((longest,) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
        padded[: x.shape[0]] = x.detach()
        parts = [torch.empty_like(padded) for _ in range(size)]
        dist.all_gather(parts, padded, group=group)
        return torch.cat([p[:n] for p, n in zip(parts, counts)], dim=0)

    def block_rows(self, x):
        return cpu_block_rows(x) if x.device.type == "cpu" and self.is_eager(x) else None

    def index_mask(self, indices, n, valid):
        mask = torch.zeros(indices.shape[:-1] + (n + 1,), dtype=torch.bool, device=indices.device)
        target = torch.where(valid, indices.to(torch.int64), n)
        return mask.scatter_(-1, target, True)[..., :n]

    # --- multi-task learning (polyloss.multitask) ---------------------------------------------------
    def task_gradients(self, losses, params, *, tape=None, create_graph=False):
        """``torch.autograd.grad`` once per task, the graph retained (the caller may still backpropagate
        a weighted sum of the same losses, as MGDA-UB does); never ``.backward()``. ``params`` are
        leaves or intermediate tensors (a shared representation). A function ``params -> losses`` is
        called with gradients enabled, on the tensors themselves when they require grad, otherwise on
        detached copies that do."""
        if tape is not None:
            raise ValueError("tape= is for TensorFlow; torch records the graph itself")
        leaves, rebuild = self.tree_flatten(params)
        with torch.enable_grad():
            if callable(losses):
                leaves = [leaf if leaf.requires_grad else leaf.detach().requires_grad_(True) for leaf in leaves]
                losses = losses(rebuild(leaves))
            if isinstance(losses, (list, tuple)):
                outputs = [torch.as_tensor(loss).reshape(()) for loss in losses]
            else:
                outputs = list(losses.reshape(-1).unbind(0))
            missing = [i for i, leaf in enumerate(leaves) if not leaf.requires_grad]
            if missing:
                raise ValueError(f"params: leaf {missing[0]} does not require grad, so no loss depends on it "
                                 "through autograd (pass tensors that require grad, or a function of params)")
            grads = []
            for loss in outputs:
                if not loss.requires_grad:
                    grads.append(rebuild([torch.zeros_like(leaf) for leaf in leaves]))
                    continue
                parts = torch.autograd.grad(loss, leaves, retain_graph=True, create_graph=create_graph,
                                            allow_unused=True)
                grads.append(rebuild([torch.zeros_like(leaf) if g is None else g for leaf, g in zip(leaves, parts)]))
        return grads

    def random_permutations(self, key, n, count, *, like):
        """``key``: a ``torch.Generator`` (on ``like``'s device type; drawn there, no host round trip), or
        what the base class takes (a NumPy generator or an int seed)."""
        if isinstance(key, torch.Generator):
            noise = torch.rand((count, n), generator=key, device=key.device).to(like.device)
            return torch.argsort(noise, dim=1)
        return super().random_permutations(key, n, count, like=like)

    # --- performance hooks (see Backend) ------------------------------------------------------------
    def bitcast(self, x, dtype):
        return x.view(dtype)

    # --- fused sigmoid and log-softmax (eager-CPU kernels, issue 17; see Backend.sigmoid) -------------
    def sigmoid(self, x):
        return torch.sigmoid(x)

    def log_softmax(self, x):
        return torch.log_softmax(x, dim=-1)

    # --- conformance support ---------------------------------------------------------------------------
    def devices(self):
        out = [("cpu", torch.device("cpu"))]
        if torch.cuda.is_available():
            out += [(f"cuda:{i}", torch.device(f"cuda:{i}")) for i in range(torch.cuda.device_count())]
        return out

    def dtypes(self, device=None):
        return ("float64", "float32", "float16", "bfloat16")

    def dtype(self, name):
        return getattr(torch, name)

    def from_numpy(self, a, *, dtype=None, device=None):
        t = torch.from_numpy(np.array(a, copy=True))
        return t.to(device=device or "cpu", dtype=self.dtype(dtype) if dtype and t.is_floating_point() else None)

    def to_numpy(self, x):
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.to(torch.float64)
        return x.numpy()

    def compile(self, f, mode):
        if mode == "compile":
            return torch.compile(f, dynamic=False)
        return super().compile(f, mode)
