r"""Leaderboard aggregation (kexue.fm/archives/8783; ``docs/metrics.md``): one number per system from its
per-task scores, by the arithmetic, geometric or harmonic mean.

.. math::

    A = \frac1T \sum_t s_t, \qquad G = \exp\Bigl(\frac1T \sum_t \log s_t\Bigr), \qquad
    H = \frac{T}{\sum_t 1 / s_t}

The post's finding is that a paper compared systems averaged over *different* task sets; a mean
of different tasks ranks nothing. Given per-system mappings, this function refuses them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from polyloss import _checks
from polyloss._namespace import namespace_of

__all__ = ["leaderboard_mean"]

KINDS = ("arithmetic", "geometric", "harmonic")


def _score(value, system, task) -> float:
    return _checks.real_number(value, f"leaderboard_mean: the score of {system!r} on {task!r} must be a real "
                                      f"number, got {value!r}")


def _table(scores: Mapping):
    """``(systems, tasks, float64 array [S, T])``, or a ValueError when the task sets differ."""
    systems = list(scores)
    if not systems:
        raise ValueError("leaderboard_mean: no systems")
    for system in systems:
        if not isinstance(scores[system], Mapping):
            raise TypeError(f"leaderboard_mean: scores[{system!r}] must be a mapping task -> score, got "
                            f"{type(scores[system]).__name__}")
    tasks = list(scores[systems[0]])
    expected = set(tasks)
    problems = []
    for system in systems[1:]:
        have = set(scores[system])
        missing, extra = sorted(map(str, expected - have)), sorted(map(str, have - expected))
        if missing or extra:
            parts = [f"lacks {', '.join(missing)}"] if missing else []
            parts += [f"has {', '.join(extra)} in addition"] if extra else []
            problems.append(f"{system!r} {' and '.join(parts)}")
    if problems:
        raise ValueError(f"leaderboard_mean: systems scored on different task sets cannot be compared; "
                         f"against {systems[0]!r}: {'; '.join(problems)}")
    table = np.array([[_score(scores[s][t], s, t) for t in tasks] for s in systems], dtype=np.float64).reshape(
        len(systems), len(tasks))
    return systems, tasks, table


def leaderboard_mean(scores, *, kind="arithmetic"):
    r"""The arithmetic, geometric or harmonic mean of per-task scores.

    ``scores`` is either

    - an array ``[..., T]`` (e.g. ``[systems, tasks]``): the mean over the last axis, returned as
      an array ``[...]`` of the scores' framework in their compute dtype; or
    - a mapping ``{system: {task: score}}``: every system must be scored on exactly the same tasks
      (a ValueError names what each system lacks or adds); returns ``{system: float}``.

    The geometric and harmonic means need every score ``> 0`` (a ValueError otherwise: a zero
    would make either mean 0 whatever the other tasks say). NaN is a ValueError; no tasks is a
    ValueError. The arithmetic mean does not overflow for scores near the dtype's maximum.

    >>> import numpy as np
    >>> from polyloss.metrics import leaderboard_mean
    >>> board = {"A": {"afqmc": 0.75, "tnews": 0.5}, "B": {"afqmc": 0.6, "tnews": 0.65}}
    >>> {k: round(v, 4) for k, v in leaderboard_mean(board, kind="harmonic").items()}
    {'A': 0.6, 'B': 0.624}
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}; got {kind!r}")
    if isinstance(scores, Mapping):
        systems, _, table = _table(scores)
        means = leaderboard_mean(table, kind=kind)
        return {system: float(v) for system, v in zip(systems, means)}
    xp, backend = namespace_of(scores=scores)
    scores, s = _checks.prepare_floating(xp, backend, scores, "scores")
    if s.ndim == 0:
        raise ValueError("leaderboard_mean: scores must be [..., tasks], got a 0-d array")
    if s.shape[-1] == 0:
        raise ValueError(f"leaderboard_mean: no tasks (scores have shape {tuple(s.shape)})")
    if _checks.values_checked(backend, s):
        _checks.fail_if_any(xp, xp.isnan(s), lambda: "leaderboard_mean: scores contain NaN (a missing task?)")
        if kind != "arithmetic":
            bad = s <= 0.0
            _checks.fail_if_any(xp, bad, lambda: f"leaderboard_mean: the {kind} mean needs positive scores; found "
                                                 f"non-positive {_checks.describe_values(xp, s, bad)}")
    if kind == "arithmetic":
        # scaled by 2^-ceil(log2 T) (exact), the sum of T scores cannot overflow near the dtype's
        # maximum; in the normal range the result is bit for bit the plain mean
        n_tasks = backend.shape(s)[-1]
        scale = 2.0 ** -math.ceil(math.log2(n_tasks)) if isinstance(n_tasks, int) else 1.0
        return xp.mean(s * scale, axis=-1) / scale
    if kind == "geometric":
        return xp.exp(xp.mean(xp.log(s), axis=-1))
    return 1.0 / xp.mean(1.0 / s, axis=-1)
