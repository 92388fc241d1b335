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
rounds (``bench_multilabel.time_interleaved``), with one NumPy ``argsort`` of the same scores (quicksort and
stable) in the same rounds as the floor of any exact method that sorts. Part 3 times one round of
``best_threshold_vector`` (every class once) at N = 5·10^4, C = 100. Run
``python benchmarks/bench_metrics.py [--quick] [--sizes 1e7] [--parts 1,3] [--threads 1] [--markdown]``.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import bench_multilabel as base  # noqa: E402  (the interleaved timer)

from polyloss import metrics  # noqa: E402

SEED = 0
POWELL_MAX_N = 10**6  # the port is not exact; at 10^7 it only adds minutes
PEERS = True  # --no-peers


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


FRAMEWORKS: list[str] = []  # --frameworks: a subset of numpy,torch,jax.jit (default: all installed)


def _frameworks():
    out = _all_frameworks()
    return {k: v for k, v in out.items() if not FRAMEWORKS or k in FRAMEWORKS}


def _all_frameworks():
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
    print("\nPart 1: best_threshold (F1), float32 binary scores; median wall and process CPU ms, value reached")
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
        if PEERS:
            values["sklearn precision_recall_curve"] = sklearn_best_f1(scores, labels)
            calls["sklearn precision_recall_curve"] = lambda s=scores, y=labels: sklearn_best_f1(s, y)
        if PEERS and n <= POWELL_MAX_N:
            values["port: Powell (kexue 8860)"] = powell_best_f1(scores, labels)
            calls["port: Powell (kexue 8860)"] = lambda s=scores, y=labels: powell_best_f1(s, y)
        # the floor of any exact method that sorts: one NumPy argsort of the same scores, in the same rounds
        for kind in ("quicksort", "stable"):
            calls[f"np.argsort(kind={kind!r})"] = lambda s=scores, kind=kind: np.argsort(s, kind=kind)
            values[f"np.argsort(kind={kind!r})"] = (math.nan, math.nan)
        cpu: dict = {}
        times = base.time_interleaved(calls, repeats, cpu)
        rows = []
        for key, ts in times.items():
            t, v = values[key]
            rows.append((str(n), key, f"{1e3 * statistics.median(ts):.1f}", f"{1e3 * statistics.median(cpu[key]):.1f}",
                         "-" if math.isnan(v) else f"{v:.6f}", "-" if math.isnan(t) else f"{t:.5f}"))
        base.print_table(("n", "candidate", "ms", "CPU ms", "F1", "threshold"), rows, right_from=2)
        for name in frameworks:
            key = f"polyloss {name}"
            for kind in ("quicksort", "stable"):
                ref = f"np.argsort(kind={kind!r})"
                print(f"n={n}: {key} / {ref}: {statistics.median(times[key]) / statistics.median(times[ref]):.2f}x "
                      f"(CPU time {statistics.median(cpu[key]) / statistics.median(cpu[ref]):.2f}x)")
        print(flush=True)


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


def vector_table(rows: int, classes: int, rounds: int) -> None:
    """``best_threshold_vector``: seconds per round of coordinate ascent (every class once)."""
    import time

    rng = np.random.default_rng(SEED)
    ids = rng.integers(0, classes, rows)
    scores = (rng.normal(0.0, 1.0, (rows, classes)) + 1.5 * np.eye(classes)[ids]
              + rng.normal(0.0, 0.5, classes)).astype(np.float32)
    print(f"\nPart 3: best_threshold_vector (macro F1), scores [{rows}, {classes}] float32; seconds per round")
    table = []
    for name, (put, _, _) in _frameworks().items():
        if name == "jax.jit":
            continue  # eager JAX compiles each operation once per shape: the first round measures compilation
        s, y = put(scores), put(ids)
        start, cpu = time.perf_counter(), time.process_time()
        _, value = metrics.best_threshold_vector(s, y, rounds=rounds)
        table.append((f"polyloss {name}", f"{(time.perf_counter() - start) / rounds:.2f}",
                      f"{(time.process_time() - cpu) / rounds:.2f}", f"{float(value):.6f}"))
    base.print_table(("candidate", "s per round", "CPU s per round", "macro F1"), table, right_from=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n up to 10^6, fewer rounds")
    parser.add_argument("--sizes", help="comma-separated n of part 1 (default 1e5,1e6,1e7; 1e5,1e6 with --quick)")
    parser.add_argument("--parts", default="1,2,3", help="which parts to run (default 1,2,3)")
    parser.add_argument("--frameworks", help="comma-separated subset of numpy,torch,jax.jit for parts 1 and 3")
    parser.add_argument("--no-peers", action="store_true", help="part 1 without scikit-learn and the Powell port")
    base.add_common_options(parser)
    args = parser.parse_args()
    base.apply_common_options(args)
    global FRAMEWORKS, PEERS
    FRAMEWORKS = [f for f in (args.frameworks or "").split(",") if f]
    PEERS = not args.no_peers
    sizes = [10**5, 10**6] if args.quick else [10**5, 10**6, 10**7]
    if args.sizes:
        sizes = [int(float(v)) for v in args.sizes.split(",")]
    parts = args.parts.split(",")
    if "1" in parts:
        threshold_table(sizes, 3 if args.quick else 5)
    if "2" in parts:
        counting_table(10**6, 5 if args.quick else 10)
    if "3" in parts:
        vector_table(*((5000, 20, 1) if args.quick else (50000, 100, 1)))


if __name__ == "__main__":
    main()
