r"""Entity-level precision, recall and F1 (kexue.fm/archives/8373; ``docs/metrics.md``).

An entity is a ``(type, start, end)`` span. With ``X = |pred ∩ true|``, ``Y = |pred|`` and
``Z = |true|`` pooled over the whole evaluation set,

.. math::

    F_1 = \frac{2X}{Y + Z}, \qquad P = \frac{X}{Y}, \qquad R = \frac{X}{Z}.

A ratio with a zero denominator (no predicted or no true entities) is ``zero_division``: 0 by
default, as seqeval and scikit-learn. Su's evaluation code starts ``X, Y, Z`` at ``1e-10``, which
makes ``P = 1`` when nothing is predicted and ``F1 = 1`` when both sets are empty: that is
``zero_division=1.0``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from polyloss.metrics import _counts

__all__ = ["global_pointer_f1", "span_f1"]


def global_pointer_f1(logits, labels, *, threshold=0.0, zero_division=0.0):
    r"""Entity F1 of GlobalPointer logits: a span is predicted when its logit ``> threshold``.

    ``logits [..., L, L]`` (e.g. ``[B, types, L, L]``; start on the second-to-last axis, end on the
    last) and 0/1 ``labels`` of the same shape. Masked spans (padding, the lower triangle) are
    ``-inf`` in the logits, as :func:`polyloss.global_pointer_mask` writes them, and 0 in the
    labels: they are never predicted and never true. ``X``, ``Y``, ``Z`` are pooled over every
    example, type and span. Returns ``(precision, recall, f1)``, 0-d arrays in the logits' compute
    dtype; :class:`polyloss.metrics.GlobalPointerF1` accumulates the counts over batches.

    >>> import numpy as np
    >>> from polyloss.metrics import global_pointer_f1
    >>> logits = np.full((1, 1, 3, 3), -5.0); logits[0, 0, 0, 1] = 2.0; logits[0, 0, 2, 2] = 1.0
    >>> labels = np.zeros((1, 1, 3, 3)); labels[0, 0, 0, 1] = 1; labels[0, 0, 1, 2] = 1
    >>> [float(v) for v in global_pointer_f1(logits, labels)]       # X=1, Y=2, Z=2
    [0.5, 0.5, 0.5]
    """
    zd = _counts.zero_division_value(zero_division)
    x, y, z, dtype, xp = entity_counts(logits, labels, threshold=threshold)
    return _counts.precision_recall_f1_from_counts(xp, x, y - x, z - x, dtype=dtype, average="micro",
                                                   zero_division=zd)


def entity_counts(logits, labels, *, threshold=0.0):
    """``(X, Y, Z, compute dtype, xp)`` of :func:`global_pointer_f1`, as exact integer arrays."""
    d = _counts.decisions(logits, labels, threshold=threshold, caller="global_pointer_f1", names=("logits", "labels"),
                          allow_class_ids=False)
    shape = tuple(d.scores.shape)
    if len(shape) < 2 or (None not in shape[-2:] and shape[-1] != shape[-2]):
        raise ValueError(f"global_pointer_f1: logits must have shape [..., L, L] (start, end), got {shape}")
    xp, backend = d.xp, d.backend
    x = _counts.as_count(xp, backend, d.pred & d.truth)
    return x, _counts.as_count(xp, backend, d.pred), _counts.as_count(xp, backend, d.truth), d.scores.dtype, xp


def _on_host(entry):
    """An array of a framework (a ``[K, n]`` array of span rows, or one span) as a NumPy array, which
    every framework's arrays become (TensorFlow tensors and array-api-strict arrays cannot be iterated
    into hashable rows); anything else unchanged."""
    from polyloss import backends

    backend = None if isinstance(entry, (str, bytes, list, tuple, set, frozenset)) else backends.backend_for(entry)
    return backend.to_numpy(entry) if backend is not None else entry


def _span_set(entry, name: str, position: int) -> set:
    entry = _on_host(entry)
    if isinstance(entry, (str, bytes)) or not isinstance(entry, Iterable):
        raise TypeError(f"{name}[{position}] must be an iterable of spans such as (type, start, end), "
                        f"got {type(entry).__name__}")
    spans = set()
    for span in entry:
        span = _on_host(span)
        if hasattr(span, "tolist"):  # a row of a NumPy / framework array
            span = span.tolist()
        if isinstance(span, list):
            span = tuple(span)
        try:
            spans.add(span)
        except TypeError:
            raise TypeError(f"{name}[{position}] holds an unhashable span {span!r}") from None
    return spans


def span_counts(pred_spans, true_spans) -> tuple[int, int, int]:
    """``(X, Y, Z)`` of :func:`span_f1` as Python ints."""
    for name, value in (("pred_spans", pred_spans), ("true_spans", true_spans)):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise TypeError(f"{name} must be a sequence with one collection of spans per sentence, "
                            f"got {type(value).__name__}")
    if len(pred_spans) != len(true_spans):
        raise ValueError(f"pred_spans has {len(pred_spans)} sentences but true_spans has {len(true_spans)}; "
                         "pass one collection of spans per sentence in both")
    x = y = z = 0
    for i, (pred, true) in enumerate(zip(pred_spans, true_spans)):
        p, t = _span_set(pred, "pred_spans", i), _span_set(true, "true_spans", i)
        x, y, z = x + len(p & t), y + len(p), z + len(t)
    return x, y, z


def ratios_of_spans(x: int, y: int, z: int, zero_division: float) -> tuple[float, float, float]:
    def ratio(num, den):
        return num / den if den else zero_division

    return ratio(x, y), ratio(x, z), ratio(2 * x, y + z)


def span_f1(pred_spans, true_spans, *, zero_division=0.0):
    r"""Entity F1 of decoded spans: ``F1 = 2X / (Y + Z)``, ``P = X / Y``, ``R = X / Z``.

    ``pred_spans`` and ``true_spans`` hold one collection of spans per sentence (the same number of
    sentences in both); a span is any hashable value, usually ``(type, start, end)`` (lists and
    array rows are turned into tuples). Within a sentence the spans are a set (a duplicate counts
    once); spans of different sentences never match. Returns Python floats
    ``(precision, recall, f1)``; :class:`polyloss.metrics.SpanF1` accumulates over batches.

    >>> from polyloss.metrics import span_f1
    >>> pred = [{("PER", 0, 1), ("LOC", 3, 3)}, set()]
    >>> true = [{("PER", 0, 1)}, {("ORG", 2, 4)}]
    >>> span_f1(pred, true)                                   # X=1, Y=2, Z=2
    (0.5, 0.5, 0.5)
    """
    zd = _counts.zero_division_value(zero_division)
    return ratios_of_spans(*span_counts(pred_spans, true_spans), zd)
