"""Speed of polyloss's metrics (docs/metrics.md) against scikit-learn / SciPy and the ports found in posts.

Part 1, ``best_threshold`` (binary float32 scores, F1), at n = 10^5, 10^6, 10^7:

  (p) ``polyloss.metrics.best_threshold`` on NumPy, torch (eager) and ``jax.jit``;
  (s) scikit-learn's ``precision_recall_curve`` followed by the argmax of F1 over its thresholds
      (the usual exact recipe; its decision is ``score >= t``);
  (h) the port of kexue 8860: ``scipy.optimize.minimize(-F1(t), method="Powell")`` from t = 0,
      one vectorised F1 evaluation per step. It is not exact: its F1 is printed beside its time.

Part 2, one pass of the counting / ranking metrics at n = 10^6 (float32):
``precision_recall_f1`` (multi-label ``[n/10, 10]``, macro) against scikit-learn's
``precision_recall_fscore_support`` on the same decisions and against a hand-written torch port
(three masked sums); the same for multi-class scores ``[n/100, 100]`` with class ids (argmax)
against scikit-learn and a torch port with ``torch.bincount``; and ``spearman`` against
``scipy.stats.spearmanr``.

Every candidate's value is compared with polyloss's before timing. Timing: medians of interleaved
rounds (``bench_multilabel.time_interleaved``). Run ``python benchmarks/bench_metrics.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import bench_multilabel as base  # noqa: E402  (the interleaved timer)

from polyloss import metrics  # noqa: E402

SEED = 0


def binary_inputs(n: int):
    rng = np.random.default_rng(SEED)
    labels = rng.random(n) < 0.3
    scores = (rng.normal(0.0, 1.0, n) + 1.2 * labels).astype(np.float32)
    return scores, labels


def sklearn_best_f1(scores, labels):
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(labels, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    best = int(np.argmax(f1[:-1]))
    return float(thresholds[best]), float(f1[best])


def powell_best_f1(scores, labels):
    """kexue 8860's recipe: a derivative-free search of the threshold on validation data."""
    from scipy.optimize import minimize

    positives = labels.sum()

    def negative_f1(t):
        predicted = scores > t[0]
        tp = np.count_nonzero(predicted & labels)
        return -2.0 * tp / (positives + np.count_nonzero(predicted))

    result = minimize(negative_f1, x0=np.zeros(1), method="Powell")
    return float(result.x[0]), -float(result.fun)


def _frameworks():
    out = {"numpy": (lambda a: a, lambda f: f, lambda x: x)}
    try:
        import torch

        out["torch"] = (torch.from_numpy, lambda f: f, lambda x: x)
    except ImportError:
        pass
    try:
        import jax

        out["jax.jit"] = (jax.device_put, jax.jit, lambda x: jax.block_until_ready(x))
    except ImportError:
        pass
    return out


def threshold_table(sizes, repeats):
    print("\nPart 1: best_threshold (F1), float32 binary scores; median ms, value reached")
    print(f"{'n':>10} {'candidate':<28} {'ms':>10} {'F1':>10} {'threshold':>11}")
    frameworks = _frameworks()
    for n in sizes:
        scores, labels = binary_inputs(n)
        calls, values = {}, {}
        for name, (put, wrap, wait) in frameworks.items():
            s, y = put(scores), put(labels)
            fn = wrap(lambda s, y: metrics.best_threshold(s, y))

            def call(fn=fn, s=s, y=y, wait=wait):
                return wait(fn(s, y))

            t, v = call()
            values[f"polyloss {name}"] = (float(t), float(v))
            calls[f"polyloss {name}"] = call
        values["sklearn precision_recall_curve"] = sklearn_best_f1(scores, labels)
        calls["sklearn precision_recall_curve"] = lambda s=scores, y=labels: sklearn_best_f1(s, y)
        values["port: Powell (kexue 8860)"] = powell_best_f1(scores, labels)
        calls["port: Powell (kexue 8860)"] = lambda s=scores, y=labels: powell_best_f1(s, y)
        times = base.time_interleaved(calls, repeats)
        for key, ts in times.items():
            t, v = values[key]
            print(f"{n:>10} {key:<28} {1e3 * statistics.median(ts):>10.1f} {v:>10.6f} {t:>11.5f}", flush=True)


def counting_table(n, repeats):
    from scipy import stats
    from sklearn.metrics import precision_recall_fscore_support

    print(f"\nPart 2: one pass at n = {n} (float32); median ms")
    rng = np.random.default_rng(SEED)
    scores = rng.normal(0.0, 1.0, (n // 10, 10)).astype(np.float32)
    labels = rng.random((n // 10, 10)) < 0.2
    rows = []
    ours = metrics.precision_recall_f1(scores, labels, average="macro")
    theirs = precision_recall_fscore_support(labels, scores > 0, average="macro", zero_division=0)[:3]
    assert np.allclose([float(v) for v in ours], theirs, rtol=1e-6), (ours, theirs)
    calls = {
        "polyloss numpy": lambda: metrics.precision_recall_f1(scores, labels, average="macro"),
        "sklearn precision_recall_fscore_support": lambda: precision_recall_fscore_support(
            labels, scores > 0, average="macro", zero_division=0),
    }
    try:
        import torch

        ts, tl = torch.from_numpy(scores), torch.from_numpy(labels)

        def torch_port():
            pred = ts > 0
            tp = (pred & tl).sum(0)
            fp, fn = pred.sum(0) - tp, tl.sum(0) - tp
            f1 = 2 * tp / (2 * tp + fp + fn).clamp(min=1)
            return f1.mean()

        assert abs(float(torch_port()) - float(ours[2])) < 1e-6
        calls["polyloss torch"] = lambda: metrics.precision_recall_f1(ts, tl, average="macro")
        calls["port: torch masked sums"] = torch_port
    except ImportError:
        pass
    # multi-class with class ids: n scores as [n / 100, 100], the prediction is the argmax
    class_scores = rng.normal(0.0, 1.0, (n // 100, 100)).astype(np.float32)
    ids = rng.integers(0, 100, n // 100)
    ours = metrics.precision_recall_f1(class_scores, ids, average="macro")
    theirs = precision_recall_fscore_support(ids, class_scores.argmax(-1), average="macro", zero_division=0)[:3]
    assert np.allclose([float(v) for v in ours], theirs, rtol=1e-6), (ours, theirs)
    calls["polyloss numpy, class ids C=100"] = lambda: metrics.precision_recall_f1(class_scores, ids,
                                                                                   average="macro")
    calls["sklearn, class ids C=100"] = lambda: precision_recall_fscore_support(
        ids, class_scores.argmax(-1), average="macro", zero_division=0)
    try:
        import torch

        tcs, tids = torch.from_numpy(class_scores), torch.from_numpy(ids)

        def torch_ids_port():
            pred = tcs.argmax(-1)
            tp = torch.bincount(tids[pred == tids], minlength=100)
            predicted, actual = torch.bincount(pred, minlength=100), torch.bincount(tids, minlength=100)
            return (2 * tp / (predicted + actual).clamp(min=1)).mean()

        assert abs(float(torch_ids_port()) - float(ours[2])) < 1e-6
        calls["polyloss torch, class ids C=100"] = lambda: metrics.precision_recall_f1(tcs, tids, average="macro")
        calls["port: torch bincount, class ids C=100"] = torch_ids_port
    except ImportError:
        pass
    x = rng.normal(0.0, 1.0, n).astype(np.float32)
    y = np.round(x + rng.normal(0.0, 1.0, n), 1)  # ties in y
    assert abs(float(metrics.spearman(x, y)) - stats.spearmanr(x, y)[0]) < 1e-5
    calls["polyloss spearman numpy"] = lambda: metrics.spearman(x, y)
    calls["scipy spearmanr"] = lambda: stats.spearmanr(x, y)
    times = base.time_interleaved(calls, repeats)
    for key, t in times.items():
        rows.append((key, 1e3 * statistics.median(t)))
        print(f"{key:<42} {rows[-1][1]:>10.2f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n up to 10^6, fewer rounds")
    args = parser.parse_args()
    sizes = [10**5, 10**6] if args.quick else [10**5, 10**6, 10**7]
    threshold_table(sizes, 3 if args.quick else 5)
    counting_table(10**6, 5 if args.quick else 10)


if __name__ == "__main__":
    main()
