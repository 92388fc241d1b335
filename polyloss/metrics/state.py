r"""Mergeable metric state: ``update`` per batch, ``merge`` across workers, ``compute`` at the end.

Each metric object keeps a small ``state``: a dict of plain arrays of the inputs' framework.

- Counting metrics (:class:`PrecisionRecallF1`, :class:`Accuracy`, :class:`GlobalPointerF1`,
  :class:`SpanF1`) keep exact integer counts (``tp``/``fp``/``fn`` per class, ``correct``/``total``,
  ``x``/``y``/``z``). Merging adds them, so any split of the data into batches, processes or Dask
  chunks gives the one-shot result bit for bit.
- Ranking metrics (:class:`BestThreshold`, :class:`Spearman`, :class:`Pearson`) need every value at
  once (a rank or a cut depends on all the others), so their state is the values themselves,
  concatenated; merging concatenates, and the result again equals the one-shot function on all the
  data.

Across processes, :meth:`Metric.all_reduce` sums the counts (or gathers the values) of every member
of a ``torch.distributed`` process group (``group=True`` for the default group), or of a JAX
``shard_map`` / ``pmap`` axis (its name); every member must call it. It is the same as::

    for name, counts in metric.state.items():
        torch.distributed.all_reduce(counts)      # the counting metrics

Dask arrays stay lazy: ``update`` builds the graph and ``compute()`` returns Dask arrays, which you
evaluate with ``dask.compute``.
"""

from __future__ import annotations

import math

from polyloss._namespace import framework_name, namespace_of
from polyloss.metrics import _counts, classification, correlation, entities

__all__ = ["Metric", "PrecisionRecallF1", "Accuracy", "GlobalPointerF1", "SpanF1", "BestThreshold",
           "Spearman", "Pearson"]


class Metric:
    """The protocol: ``update(...)`` (returns self), ``merge(*others)`` (returns self),
    ``compute()``, ``reset()``, ``all_reduce(group)`` and the ``state`` dict.

    An object keeps the framework of its first batch: a later batch (or merged object) of another
    framework, NumPy included, is a TypeError naming both.

    Subclasses define ``_measure(*inputs) -> (state dict, compute dtype)`` and
    ``_result(state, dtype)``; ``_concatenated`` says whether merging concatenates (values) or adds
    (counts).

    Each class declares its state: ``fields`` maps every state name to how two states combine
    (``"sum"`` or ``"cat"`` along axis 0), and ``outputs`` names the entries of a tuple result (None
    for one value). The native wrappers (``polyloss.torch.metrics``, ``polyloss.keras.metrics``)
    are generated from them and call :meth:`measure` and :meth:`result`, the same two steps
    ``update`` and ``compute`` take."""

    _concatenated = False
    fields: dict = {}
    outputs: tuple | None = None

    def __init__(self):
        self.reset()

    def reset(self):
        """Forget every update."""
        self._state = None
        self._dtype = None
        return self

    @property
    def state(self) -> dict:
        """The state arrays by name (empty before the first update)."""
        return dict(self._state or {})

    def _config(self) -> tuple:
        return ()

    def update(self, *inputs):
        """Add a batch."""
        state, dtype = self._measure(*inputs)
        self._absorb(state, dtype)
        return self

    def measure(self, *inputs):
        """``(state, dtype)``: the state of one batch (arrays by field name) and the compute dtype of its
        result, without touching this object's state (for wrappers that keep the state themselves)."""
        return self._measure(*inputs)

    def result(self, state: dict, dtype):
        """The metric of ``state`` (a dict of arrays by field name, e.g. summed by a wrapper), computed in
        ``dtype``: what :meth:`compute` returns for that state."""
        return self._result(state, dtype)

    def merge(self, *others):
        """Add the state of other objects of the same metric and settings (e.g. from other workers)."""
        for other in others:
            if type(other) is not type(self) or other._config() != self._config():
                raise TypeError(f"cannot merge {other!r} into {self!r}: a different metric or settings")
            if other._state is not None:
                self._absorb(other._state, other._dtype)
        return self

    def _absorb(self, state: dict, dtype):
        if self._state is None:
            # copies: the state must not be a view of a caller's buffer (refilled for the next
            # batch) or share arrays with the object merged in (reduced in place across processes)
            xp, _ = namespace_of(state=next(iter(state.values())))
            self._state = {name: xp.asarray(v, copy=True) for name, v in state.items()}
            self._dtype = dtype
            return
        first, batch = next(iter(self._state.values())), next(iter(state.values()))
        xp, backend = namespace_of(state=first, update=batch)
        if not backend.is_array(batch):  # NumPy next to another framework: one framework per object
            raise TypeError(f"{type(self).__name__}: state is a {backend.name} array but update is a "
                            f"{framework_name(batch)} array; pass update as a {backend.name} array")
        merged = {}
        for name, mine in self._state.items():
            theirs = state[name]
            if self._concatenated:
                if mine.shape[1:] != theirs.shape[1:]:
                    raise ValueError(f"{type(self).__name__}: {name} of shape {tuple(theirs.shape)} cannot join "
                                     f"earlier batches of shape {tuple(mine.shape)}")
                merged[name] = xp.concat([mine, theirs], axis=0)
            else:
                if tuple(mine.shape) != tuple(theirs.shape):
                    raise ValueError(f"{type(self).__name__}: counts of shape {tuple(theirs.shape)} (e.g. a "
                                     f"different number of classes) cannot join earlier ones of shape "
                                     f"{tuple(mine.shape)}")
                merged[name] = mine + theirs
        self._state = merged
        self._dtype = xp.float64 if xp.float64 in (dtype, self._dtype) else self._dtype

    def compute(self):
        """The metric of everything added so far."""
        if self._state is None:
            raise ValueError(f"{type(self).__name__}.compute(): no data yet (call update first)")
        return self._result(self._state, self._dtype)

    def all_reduce(self, group=True):
        """Combine the state of every member of ``group`` in place (every member must call it):
        counts are summed, values gathered. ``group``: a ``torch.distributed`` process group or True
        (the default group), or the axis name of a JAX ``shard_map`` / ``pmap``."""
        if self._state is None:
            raise ValueError(f"{type(self).__name__}.all_reduce(): update at least once first (a member with "
                             "no data can update with an empty batch)")
        _, backend = namespace_of(state=next(iter(self._state.values())))
        combine = backend.all_gather_varying if self._concatenated else backend.all_reduce
        self._state = {name: combine(v, group) for name, v in self._state.items()}
        return self

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self._settings().items())
        return f"{type(self).__name__}({settings})"

    def _settings(self) -> dict:
        return {}


class PrecisionRecallF1(Metric):
    """Accumulates per-class ``tp``, ``fp``, ``fn`` for :func:`~polyloss.metrics.precision_recall_f1`
    (same arguments); ``compute()`` returns ``(precision, recall, f1)``.

    >>> import numpy as np
    >>> from polyloss.metrics import PrecisionRecallF1
    >>> m = PrecisionRecallF1(average="macro")
    >>> _ = m.update(np.array([[2.0, -1.0]]), np.array([[1, 0]])).update(np.array([[-1.0, 3.0]]), np.array([[1, 1]]))
    >>> {k: v.tolist() for k, v in m.state.items()}
    {'tp': [1, 1], 'fp': [0, 0], 'fn': [1, 0]}
    >>> [round(float(v), 4) for v in m.compute()]
    [1.0, 0.75, 0.8333]
    """

    fields = {"tp": "sum", "fp": "sum", "fn": "sum"}
    outputs = ("precision", "recall", "f1")

    def __init__(self, *, threshold=0.0, average="micro", zero_division=0.0):
        _counts.check_threshold_kind(threshold)
        self.threshold = threshold
        self.average = _counts.check_average(average)
        self.zero_division = _counts.zero_division_value(zero_division)
        super().__init__()

    def _settings(self):
        return {"threshold": self.threshold, "average": self.average, "zero_division": self.zero_division}

    def _config(self):
        return (_counts.settings_key(self.threshold), self.average, _counts.settings_key(self.zero_division))

    def update(self, scores, labels):
        """Add a batch: ``scores`` and ``labels`` as for :func:`~polyloss.metrics.precision_recall_f1` (0/1
        labels of the scores' shape, or class ids of ``scores.shape[:-1]``). Returns ``self``."""
        return super().update(scores, labels)

    def _measure(self, scores, labels):
        d = _counts.decisions(scores, labels, threshold=self.threshold, caller="PrecisionRecallF1.update")
        tp, fp, fn = _counts.class_counts(d)
        return {"tp": tp, "fp": fp, "fn": fn}, d.scores.dtype

    def _result(self, state, dtype):
        xp, _ = namespace_of(tp=state["tp"])
        return _counts.precision_recall_f1_from_counts(xp, state["tp"], state["fp"], state["fn"], dtype=dtype,
                                                       average=self.average, zero_division=self.zero_division)


class Accuracy(Metric):
    """Accumulates ``correct`` and ``total`` for :func:`~polyloss.metrics.accuracy`."""

    fields = {"correct": "sum", "total": "sum"}

    def __init__(self, *, threshold=0.0):
        _counts.check_threshold_kind(threshold)
        self.threshold = threshold
        super().__init__()

    def _settings(self):
        return {"threshold": self.threshold}

    def _config(self):
        return (_counts.settings_key(self.threshold),)

    def update(self, scores, labels):
        """Add a batch: ``scores`` and ``labels`` as for :func:`~polyloss.metrics.accuracy`. Returns ``self``."""
        return super().update(scores, labels)

    def _measure(self, scores, labels):
        d = _counts.decisions(scores, labels, threshold=self.threshold, caller="Accuracy.update")
        correct, total = _counts.correct_counts(d)
        return {"correct": correct, "total": _counts.filled(d.xp, correct, total)}, d.scores.dtype

    def _result(self, state, dtype):
        xp, backend = namespace_of(correct=state["correct"])
        total = state["total"]
        if backend.is_eager(total) and int(total) == 0:
            raise ValueError("Accuracy.compute(): no examples")
        return _counts.ratio(xp, state["correct"], total, dtype, math.nan)


class GlobalPointerF1(Metric):
    """Accumulates ``x``, ``y``, ``z`` (true positive, predicted and true spans) for
    :func:`~polyloss.metrics.global_pointer_f1`; ``compute()`` returns ``(precision, recall, f1)``."""

    fields = {"x": "sum", "y": "sum", "z": "sum"}
    outputs = ("precision", "recall", "f1")

    def __init__(self, *, threshold=0.0, zero_division=0.0):
        _counts.check_threshold_kind(threshold)
        self.threshold = threshold
        self.zero_division = _counts.zero_division_value(zero_division)
        super().__init__()

    def _settings(self):
        return {"threshold": self.threshold, "zero_division": self.zero_division}

    def _config(self):
        return (_counts.settings_key(self.threshold), _counts.settings_key(self.zero_division))

    def update(self, logits, labels):
        """Add a batch: GlobalPointer ``logits [..., L, L]`` (masked spans ``-inf``) and 0/1 ``labels`` of
        the same shape, as for :func:`~polyloss.metrics.global_pointer_f1`. Returns ``self``."""
        return super().update(logits, labels)

    def _measure(self, logits, labels):
        x, y, z, dtype, _ = entities.entity_counts(logits, labels, threshold=self.threshold)
        return {"x": x, "y": y, "z": z}, dtype

    def _result(self, state, dtype):
        xp, _ = namespace_of(x=state["x"])
        x, y, z = state["x"], state["y"], state["z"]
        return _counts.precision_recall_f1_from_counts(xp, x, y - x, z - x, dtype=dtype, average="micro",
                                                       zero_division=self.zero_division)


class SpanF1(Metric):
    """Accumulates ``x``, ``y``, ``z`` for :func:`~polyloss.metrics.span_f1` as NumPy int64 counts
    (spans are Python values); ``compute()`` returns Python floats. Across processes, sum the three
    counts with your framework (e.g. ``torch.distributed.all_reduce`` of ``torch.tensor([x, y, z])``)
    or gather the metric objects (``torch.distributed.all_gather_object``) and ``merge`` them."""

    fields = {"x": "sum", "y": "sum", "z": "sum"}
    outputs = ("precision", "recall", "f1")

    def __init__(self, *, zero_division=0.0):
        self.zero_division = _counts.zero_division_value(zero_division)
        super().__init__()

    def _settings(self):
        return {"zero_division": self.zero_division}

    def _config(self):
        return (_counts.settings_key(self.zero_division),)

    def update(self, pred_spans, true_spans):
        """Add a batch: one collection of spans per sentence in each, as for
        :func:`~polyloss.metrics.span_f1`. Returns ``self``."""
        return super().update(pred_spans, true_spans)

    def _measure(self, pred_spans, true_spans):
        import numpy as np

        x, y, z = entities.span_counts(pred_spans, true_spans)
        return {"x": np.int64(x), "y": np.int64(y), "z": np.int64(z)}, None

    def _absorb(self, state, dtype):
        if self._state is None:
            self._state = dict(state)
        else:
            self._state = {k: self._state[k] + state[k] for k in self._state}

    def _result(self, state, dtype):
        return entities.ratios_of_spans(int(state["x"]), int(state["y"]), int(state["z"]), self.zero_division)

    def all_reduce(self, group=True):
        raise TypeError("SpanF1 counts Python spans: sum its three counts with your framework's all-reduce, or "
                        "gather the objects and merge them (see the class docstring)")


class _Values(Metric):
    """State: the inputs themselves, rows concatenated along axis 0."""

    _concatenated = True


class BestThreshold(_Values):
    """Collects scores and labels for :func:`~polyloss.metrics.best_threshold` (an exact cut needs
    every score); ``compute()`` returns ``(threshold, value)``."""

    fields = {"scores": "cat", "labels": "cat"}
    outputs = ("threshold", "value")

    def __init__(self, *, metric="f1", zero_division=0.0):
        self.metric = _counts.check_metric(metric)
        self.zero_division = _counts.zero_division_value(zero_division)
        super().__init__()

    def _settings(self):
        return {"metric": self.metric, "zero_division": self.zero_division}

    def _config(self):
        return (self.metric, _counts.settings_key(self.zero_division))

    def update(self, scores, labels):
        """Add a batch: ``scores`` and 0/1 ``labels`` of the same shape, as for
        :func:`~polyloss.metrics.best_threshold`. Returns ``self``."""
        return super().update(scores, labels)

    def _measure(self, scores, labels):
        d = _counts.decisions(scores, labels, decide=False, caller="BestThreshold.update", allow_class_ids=False,
                              class_id_hint=_counts.CLASS_ID_HINT)
        xp, backend = d.xp, d.backend
        shape = (-1,) if d.binary else (-1, backend.shape(d.scores)[-1])
        return {"scores": xp.reshape(d.scores, shape), "labels": xp.reshape(d.truth, shape)}, d.scores.dtype

    def _result(self, state, dtype):
        return classification.best_threshold(state["scores"], state["labels"], metric=self.metric,
                                             zero_division=self.zero_division)


class _Correlation(_Values):
    fields = {"x": "cat", "y": "cat"}
    _function = None
    _finite = False  # the function's own rules for the values
    _keep_y_dtype = False

    def update(self, x, y):
        """Add a batch of pairs: 1-D ``x`` (floating) and ``y`` of the same length; a batch may hold one
        pair or none. Returns ``self``."""
        return super().update(x, y)

    def _measure(self, x, y):
        # a batch may hold one pair, or none (a worker without data): compute() needs two in all
        xp, backend, xc, yc = correlation.paired(
            x, y, type(self).__name__ + ".update", finite=self._finite, min_pairs=0, keep_y_dtype=self._keep_y_dtype
        )
        return {"x": xc, "y": yc}, xc.dtype

    def _result(self, state, dtype):
        return type(self)._function(state["x"], state["y"])


class Spearman(_Correlation):
    """Collects pairs for :func:`~polyloss.metrics.spearman` (ranks need every value)."""

    _function = staticmethod(correlation.spearman)
    _keep_y_dtype = True


class Pearson(_Correlation):
    """Collects pairs for :func:`~polyloss.metrics.pearson`; ``compute()`` equals the one-shot
    function on all the pairs exactly (a streaming sum of moments would not)."""

    _function = staticmethod(correlation.pearson)
    _finite = True
