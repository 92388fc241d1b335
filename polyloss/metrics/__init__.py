"""Evaluation metrics (``docs/metrics.md``), each written once against the array API, with mergeable state.

Functions: :func:`precision_recall_f1`, :func:`accuracy`, :func:`best_threshold`,
:func:`best_threshold_vector`, :func:`global_pointer_f1`, :func:`span_f1`, :func:`pearson`,
:func:`spearman`, :func:`leaderboard_mean`. State objects (``update`` / ``merge`` / ``compute`` /
``reset`` / ``all_reduce``): :class:`PrecisionRecallF1`, :class:`Accuracy`, :class:`GlobalPointerF1`,
:class:`SpanF1`, :class:`BestThreshold`, :class:`Spearman`, :class:`Pearson`.
"""

from polyloss.metrics import classification, correlation, entities, leaderboard, state
from polyloss.metrics.classification import *  # noqa: F401,F403
from polyloss.metrics.correlation import *  # noqa: F401,F403
from polyloss.metrics.entities import *  # noqa: F401,F403
from polyloss.metrics.leaderboard import *  # noqa: F401,F403
from polyloss.metrics.state import *  # noqa: F401,F403

__all__ = [*classification.__all__, *entities.__all__, *correlation.__all__, *leaderboard.__all__,
           *state.__all__]
