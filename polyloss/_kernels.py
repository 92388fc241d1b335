"""The one way to give a function a hand-written gradient: :class:`Kernel`.

A kernel is a pair of functions written once against the array API::

    fwd(xp, backend, *arrays, **options) -> (out, residuals)
    bwd(xp, backend, arrays, residuals, cotangent, needs, **options) -> cotangents

- ``arrays`` are the differentiable positional inputs (arrays of one framework); ``options`` are
  static keyword arguments (Python numbers, strings, booleans: hashable), fixed per compiled
  variant.
- ``out`` is one array; ``residuals`` a tuple of arrays that ``bwd`` needs (keep it short: every
  residual stays in memory until the backward pass; prefer recomputing from ``arrays``).
- ``bwd`` returns one cotangent per array, in order: an array of that array's shape, or None where
  ``needs[i]`` is False (no gradient is asked for it; integer and boolean inputs never need one).

Three rules that every framework imposes are kept here and in the adapters, in code:

1. ``fwd`` and ``bwd`` receive the adapter and its namespace as arguments, looked up by name at each
   call (:func:`polyloss.backends.get_backend`); a kernel never closes over an adapter object.
   ``torch.compile`` traces a custom ``autograd.Function`` only when everything it closes over is a
   module, a function or a constant.
2. ``fwd`` must be a pure function of its inputs: TensorFlow does not record the forward pass of a
   custom gradient, so its adapter recomputes ``residuals`` inside the gradient function (residuals
   kept from the forward pass would be constants to an outer tape, and second derivatives silently
   wrong); torch recomputes them the same way when a graph of the gradient is asked for
   (``create_graph=True``). ``bwd`` must therefore use only ``arrays``, ``residuals`` and
   ``cotangent``, never state saved aside by ``fwd``.
3. ``bwd`` is written with differentiable operations of ``xp`` only, so that the gradient is itself
   differentiable (gradient penalties, VAT's power iteration): every adapter differentiates through
   ``bwd`` for higher orders.

Each kernel owns its cache: one compiled custom-gradient function per (backend, options). Usage::

    def _fwd(xp, backend, x, *, b): ...
    def _bwd(xp, backend, arrays, residuals, g, needs, *, b): ...
    _squareplus = Kernel("squareplus", _fwd, _bwd)

    _squareplus(backend, x, b=4.0)
"""

from __future__ import annotations

from collections.abc import Callable

from polyloss.backends import get_backend

__all__ = ["Kernel"]


class Kernel:
    """A function with a hand-written gradient on every backend (see the module docstring)."""

    def __init__(self, name: str, fwd: Callable, bwd: Callable):
        self.name = name
        self._fwd = fwd
        self._bwd = bwd
        self._compiled: dict[tuple, Callable] = {}

    def __call__(self, backend, *arrays, **options):
        """``out`` of ``fwd`` on ``arrays``, differentiable through ``bwd`` on ``backend``."""
        key = (backend.name, tuple(sorted(options.items())))
        function = self._compiled.get(key)
        if function is None:
            function = backend.custom_vjp(*self._bind(backend.name, options))
            self._compiled[key] = function
        return function(*arrays)

    def forward(self, backend, *arrays, **options):
        """``fwd``'s ``(out, residuals)`` without any gradient machinery (for kernels that call
        themselves, and for tests)."""
        return self._fwd(backend.namespace, backend, *arrays, **options)

    def _bind(self, backend_name: str, options: dict):
        """``fwd(*arrays)`` and ``bwd(arrays, residuals, g, needs)`` as the adapters' ``custom_vjp``
        takes them. They close over the backend's name, the kernel's functions and its static options
        only (rule 1)."""
        fwd, bwd, kernel = self._fwd, self._bwd, self.name

        def bound_fwd(*arrays):
            backend = get_backend(backend_name)
            out, residuals = fwd(backend.namespace, backend, *arrays, **options)
            return out, tuple(residuals)

        def bound_bwd(arrays, residuals, g, needs):
            backend = get_backend(backend_name)
            cotangents = tuple(bwd(backend.namespace, backend, tuple(arrays), tuple(residuals), g, tuple(needs),
                                   **options))
            if len(cotangents) != len(arrays):
                raise RuntimeError(f"kernel {kernel!r}: bwd returned {len(cotangents)} cotangents for "
                                   f"{len(arrays)} arrays")
            return tuple(c if n else None for c, n in zip(cotangents, needs))

        return bound_fwd, bound_bwd

    def __repr__(self) -> str:
        return f"<polyloss kernel {self.name}>"
