"""torchmetrics faces of polyloss's metrics (``docs/torch.md``): ``torchmetrics.Metric`` classes, so
that DDP synchronises them and Lightning logs them.

    f1 = plt.metrics.MultilabelF1(threshold=0.0)
    f1.update(logits, labels); f1.compute()

Each class is generated from the metrics' table (``polyloss._wrappers.METRICS``) and the state object's
declared ``fields``: a ``"sum"`` field is a tensor state with ``dist_reduce_fx="sum"`` (exact integer
counts), a ``"cat"`` field a list state with ``dist_reduce_fx="cat"`` (the values themselves);
``full_state_update=False``. ``update(preds, target)`` measures the batch with the state object and
``compute()`` applies the state object's ``result`` to the (synchronised) states, so the value equals
``polyloss.metrics`` on all the data, over batches and over processes. The constructor takes the state
object's settings (``threshold``, ``average``, ``zero_division``, ``metric``) and torchmetrics' own
keyword arguments (``sync_on_compute``, ``process_group``, ...). Every process must update at least
once before a synchronised ``compute`` (an empty batch will do), as for ``Metric.all_reduce``.
"""

from __future__ import annotations

import importlib.util
import inspect

from polyloss import _wrappers

_NEEDS_TORCHMETRICS = ("polyloss.torch.metrics needs torchmetrics: pip install 'polyloss[torch]' (or pip install "
                       "torchmetrics); the losses of polyloss.torch work without it")


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # ValueError: a module in sys.modules without a spec (or None)
        return False


if not _installed("torchmetrics"):  # said at once, without importing it (or torch)
    raise ImportError(_NEEDS_TORCHMETRICS)

torch = torchmetrics = dim_zero_cat = None  # imported by _load, on the first use of a class

__all__ = ["Metric", "metric_class"] + [line.name for line in _wrappers.METRICS]


class _MetricMethods:
    """The body of :class:`Metric`, the base of the generated classes (``Metric`` is made of it and
    ``torchmetrics.Metric`` by ``_load``): ``line`` names the state object and the output."""

    line: _wrappers.MetricClass
    _state_class = None
    full_state_update = False
    is_differentiable = False

    def __init__(self, **kwargs):
        names = {p.name for p in inspect.signature(self._state_class).parameters.values()}
        settings = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
        super().__init__(**kwargs)
        self._measurer = self._state_class(**settings)  # checks the settings now
        self.settings = settings
        self._compute_dtype = None
        for field, how in self._state_class.fields.items():
            if how == "sum":
                self.add_state(field, default=torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
            else:
                self.add_state(field, default=[], dist_reduce_fx="cat")

    def update(self, preds, target):
        state, dtype = self._measurer.measure(preds, target)
        self._compute_dtype = dtype
        for field, how in self._state_class.fields.items():
            if how == "sum":  # a per-class count broadcasts the 0-d default on the first batch
                setattr(self, field, getattr(self, field) + state[field])
            else:
                getattr(self, field).append(state[field])

    def compute(self):
        state = {}
        for field, how in self._state_class.fields.items():
            value = getattr(self, field)
            state[field] = value if how == "sum" else dim_zero_cat(value)
        value = self._measurer.result(state, self._compute_dtype or torch.get_default_dtype())
        index = self.line.index
        return value if index is None else value[index]

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.settings.items())


def metric_class(line: _wrappers.MetricClass) -> type:
    """The ``torchmetrics.Metric`` class of one line of the metrics' table."""
    _load()
    state_class = line.resolve()
    what = "the whole result" if line.output is None else f"its {line.output}"
    doc = (f"``torchmetrics.Metric`` over :class:`polyloss.metrics.{line.state}`: {what} (see the module "
           f"docstring); states {', '.join(f'{k} ({v})' for k, v in state_class.fields.items())}.")
    higher = None if line.output is None and state_class.outputs is not None else True
    return type(line.name, (Metric,), {"line": line, "_state_class": state_class, "__doc__": doc,
                                       "__module__": __name__, "higher_is_better": higher})


def _load() -> None:
    """Import torch and torchmetrics, make ``Metric`` and one class per line of the table (once)."""
    global torch, torchmetrics, dim_zero_cat, Metric
    if torchmetrics is not None:
        return
    try:
        import torchmetrics as metrics_framework
        from torchmetrics.utilities import dim_zero_cat as cat
    except ImportError as exc:  # the losses of polyloss.torch work without it
        raise ImportError(_NEEDS_TORCHMETRICS) from exc
    import torch as framework

    torch, torchmetrics, dim_zero_cat = framework, metrics_framework, cat
    Metric = type("Metric", (_MetricMethods, torchmetrics.Metric),
                  {"__module__": __name__, "__doc__": _MetricMethods.__doc__})
    for line in _wrappers.METRICS:
        globals()[line.name] = metric_class(line)


_CLASSES = frozenset(["Metric", *(line.name for line in _wrappers.METRICS)])


def __getattr__(name):
    # the classes are made on first use: importing this module imports no framework
    if name in _CLASSES:
        _load()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})
