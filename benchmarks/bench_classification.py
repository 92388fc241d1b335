"""Speed of polyloss's classification family (docs/classification.md) against the frameworks' own functions and ports.

For each loss, three candidates, forward+backward (the mean loss and its gradient with respect to the
logits), float32 logits ``[N, C]``:

  (p) polyloss;
  (n) the framework's own function where one exists (torch ``F.cross_entropy`` /
      ``F.binary_cross_entropy_with_logits``, optax, ``tf.nn``, ``jax.nn.squareplus``); for torch's focal loss,
      which torch lacks, native BCE (the issue's baseline; no |Δ| of the values is shown for it);
  (h) a straightforward hand port of the formula, as found in blog posts and repositories.

Frameworks: torch eager, ``torch.compile`` (every candidate compiled), ``jax.jit`` and
``tf.function``. Timing as in ``bench_multilabel.py`` (whose framework adapters and interleaved
timer this script reuses): warm-up calls, then rounds that run every candidate once in a rotated
order; the table gives medians in milliseconds and the ratios polyloss / native and polyloss / port.
Before timing, every candidate's per-example values are compared with polyloss's (max abs difference
in the last column), so a fast but different function cannot pass unnoticed.

Run ``python benchmarks/bench_classification.py [--quick] [--frameworks torch,jax,tensorflow]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import bench_multilabel as base  # noqa: E402  (the framework adapters and the timer)

import polyloss  # noqa: E402

FRAMEWORKS = ("torch", "torch.compile", "jax", "tensorflow")
SELECTED: list[str] = []  # --losses
EPS_SMOOTH, GAMMA, ALPHA, POLY_EPS, RDROP_ALPHA = 0.1, 2.0, 0.25, 1.0, 4.0


@dataclass
class Shape:
    examples: int = 4096
    classes: int = 1000
    repeats: int = 20


def host_inputs(shape: Shape) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(base.SEED)
    n, c = shape.examples, shape.classes
    logits = rng.normal(0.0, 2.0, (n, c)).astype(np.float32)
    return {
        "logits": logits,
        "logits_b": (logits + rng.normal(0.0, 0.1, (n, c))).astype(np.float32),
        "ids": rng.integers(0, c, n),
        "binary": (rng.random((n, c)) < 0.01).astype(np.float32),
    }


# --------------------------------------------------------------------------------------------
# Candidates per framework: name -> (polyloss, native or None, port), each (logits, aux) -> per example
# --------------------------------------------------------------------------------------------
def torch_candidates(fw):
    torch, F = fw.torch, fw.F

    def onehot(ids, c):
        return F.one_hot(ids, c).to(torch.float32)

    def focal_port(s, y):  # torchvision.ops.sigmoid_focal_loss, written out
        p = torch.sigmoid(s)
        ce = F.binary_cross_entropy_with_logits(s, y, reduction="none")
        p_t = p * y + (1 - p) * (1 - y)
        return (ALPHA * y + (1 - ALPHA) * (1 - y)) * ce * (1 - p_t) ** GAMMA

    def rdrop_port(s, aux):
        b, ids = aux
        lp, lq = F.log_softmax(s, -1), F.log_softmax(b, -1)
        kl = F.kl_div(lq, lp, log_target=True, reduction="none").sum(-1) + \
            F.kl_div(lp, lq, log_target=True, reduction="none").sum(-1)
        return (
            F.cross_entropy(s, ids, reduction="none") + F.cross_entropy(b, ids, reduction="none") + RDROP_ALPHA / 2 * kl
        )

    return {
        "softmax_crossentropy": (
            lambda s, y: polyloss.softmax_crossentropy(s, y),
            lambda s, y: F.cross_entropy(s, y, reduction="none"),
            lambda s, y: -(onehot(y, s.shape[-1]) * torch.log_softmax(s, -1)).sum(-1),
        ),
        "softmax_crossentropy ε=0.1": (
            lambda s, y: polyloss.softmax_crossentropy(s, y, label_smoothing=EPS_SMOOTH),
            lambda s, y: F.cross_entropy(s, y, reduction="none", label_smoothing=EPS_SMOOTH),
            lambda s, y: (
                -(
                    (onehot(y, s.shape[-1]) * (1 - EPS_SMOOTH) + EPS_SMOOTH / s.shape[-1]) * torch.log_softmax(s, -1)
                ).sum(-1)
            ),
        ),
        "sigmoid_crossentropy": (
            lambda s, y: polyloss.sigmoid_crossentropy(s, y),
            lambda s, y: F.binary_cross_entropy_with_logits(s, y, reduction="none"),
            lambda s, y: -(y * torch.log(torch.sigmoid(s)) + (1 - y) * torch.log(1 - torch.sigmoid(s))),
        ),
        # torch has no focal loss: its "native" is BCE, the target's baseline (issue 17), timed in the same rounds
        "focal_loss (sigmoid)": (
            lambda s, y: polyloss.focal_loss(s, y, gamma=GAMMA, alpha=ALPHA),
            lambda s, y: F.binary_cross_entropy_with_logits(s, y, reduction="none"),
            focal_port,
        ),
        "poly1_crossentropy": (
            lambda s, y: polyloss.poly1_crossentropy(s, y, epsilon=POLY_EPS),
            None,
            lambda s, y: (
                F.cross_entropy(s, y, reduction="none")
                + POLY_EPS * (1 - torch.softmax(s, -1).gather(-1, y[:, None])[:, 0])
            ),
        ),
        "rdrop_loss": (lambda s, aux: polyloss.rdrop_loss(s, aux[0], aux[1], alpha=RDROP_ALPHA), None, rdrop_port),
        "squareplus": (lambda s, _: polyloss.squareplus(s), None, lambda s, _: (s + torch.sqrt(s * s + 4.0)) / 2),
    }


def jax_candidates(fw):
    jax, jnp, optax = fw.jax, fw.jnp, fw.optax

    def rdrop_port(s, aux):
        b, ids = aux
        lp, lq = jax.nn.log_softmax(s), jax.nn.log_softmax(b)
        kl = jnp.sum(jnp.exp(lp) * (lp - lq), -1) + jnp.sum(jnp.exp(lq) * (lq - lp), -1)
        ce = -jnp.take_along_axis(lp, ids[:, None], -1)[:, 0] - jnp.take_along_axis(lq, ids[:, None], -1)[:, 0]
        return ce + RDROP_ALPHA / 2 * kl

    def focal_port(s, y):
        p = jax.nn.sigmoid(s)
        ce = -(y * jnp.log(p) + (1 - y) * jnp.log(1 - p))
        p_t = p * y + (1 - p) * (1 - y)
        return (ALPHA * y + (1 - ALPHA) * (1 - y)) * ce * (1 - p_t) ** GAMMA

    def smoothed(y, c):
        return optax.smooth_labels(jax.nn.one_hot(y, c), EPS_SMOOTH)

    return {
        "softmax_crossentropy": (
            lambda s, y: polyloss.softmax_crossentropy(s, y),
            (lambda s, y: optax.losses.softmax_cross_entropy_with_integer_labels(s, y)) if optax else None,
            lambda s, y: -jnp.sum(jax.nn.one_hot(y, s.shape[-1]) * jax.nn.log_softmax(s), -1),
        ),
        "softmax_crossentropy ε=0.1": (
            lambda s, y: polyloss.softmax_crossentropy(s, y, label_smoothing=EPS_SMOOTH),
            (lambda s, y: optax.softmax_cross_entropy(s, smoothed(y, s.shape[-1]))) if optax else None,
            lambda s, y: (
                -jnp.sum(
                    (jax.nn.one_hot(y, s.shape[-1]) * (1 - EPS_SMOOTH) + EPS_SMOOTH / s.shape[-1])
                    * jax.nn.log_softmax(s),
                    -1,
                )
            ),
        ),
        "sigmoid_crossentropy": (
            lambda s, y: polyloss.sigmoid_crossentropy(s, y),
            (lambda s, y: optax.losses.sigmoid_binary_cross_entropy(s, y)) if optax else None,
            lambda s, y: -(y * jnp.log(jax.nn.sigmoid(s)) + (1 - y) * jnp.log(1 - jax.nn.sigmoid(s))),
        ),
        "focal_loss (sigmoid)": (
            lambda s, y: polyloss.focal_loss(s, y, gamma=GAMMA, alpha=ALPHA),
            (lambda s, y: optax.losses.sigmoid_focal_loss(s, y, alpha=ALPHA, gamma=GAMMA)) if optax else None,
            focal_port,
        ),
        "poly1_crossentropy": (
            lambda s, y: polyloss.poly1_crossentropy(s, y, epsilon=POLY_EPS),
            (lambda s, y: optax.losses.poly_loss_cross_entropy(s, jax.nn.one_hot(y, s.shape[-1]), epsilon=POLY_EPS))
            if optax
            else None,
            lambda s, y: (
                -jnp.take_along_axis(jax.nn.log_softmax(s), y[:, None], -1)[:, 0]
                + POLY_EPS * (1 - jnp.take_along_axis(jax.nn.softmax(s), y[:, None], -1)[:, 0])
            ),
        ),
        "rdrop_loss": (lambda s, aux: polyloss.rdrop_loss(s, aux[0], aux[1], alpha=RDROP_ALPHA), None, rdrop_port),
        "squareplus": (
            lambda s, _: polyloss.squareplus(s),
            lambda s, _: jax.nn.squareplus(s),
            lambda s, _: (s + jnp.sqrt(s * s + 4.0)) / 2,
        ),
    }


def tf_candidates(fw):
    tf = fw.tf

    def rdrop_port(s, aux):
        b, ids = aux
        lp, lq = tf.nn.log_softmax(s), tf.nn.log_softmax(b)
        kl = tf.reduce_sum(tf.exp(lp) * (lp - lq), -1) + tf.reduce_sum(tf.exp(lq) * (lq - lp), -1)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(ids, s) + tf.nn.sparse_softmax_cross_entropy_with_logits(
            ids, b
        )
        return ce + RDROP_ALPHA / 2 * kl

    def focal_port(s, y):
        p = tf.sigmoid(s)
        ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=s)
        p_t = p * y + (1 - p) * (1 - y)
        return (ALPHA * y + (1 - ALPHA) * (1 - y)) * ce * (1 - p_t) ** GAMMA

    def smoothed(y, c):
        return tf.one_hot(y, c) * (1 - EPS_SMOOTH) + EPS_SMOOTH / c

    return {
        "softmax_crossentropy": (
            lambda s, y: polyloss.softmax_crossentropy(s, y),
            lambda s, y: tf.nn.sparse_softmax_cross_entropy_with_logits(y, s),
            lambda s, y: -tf.reduce_sum(tf.one_hot(y, s.shape[-1]) * tf.nn.log_softmax(s), -1),
        ),
        "softmax_crossentropy ε=0.1": (
            lambda s, y: polyloss.softmax_crossentropy(s, y, label_smoothing=EPS_SMOOTH),
            lambda s, y: tf.nn.softmax_cross_entropy_with_logits(smoothed(y, s.shape[-1]), s),
            lambda s, y: -tf.reduce_sum(smoothed(y, s.shape[-1]) * tf.nn.log_softmax(s), -1),
        ),
        "sigmoid_crossentropy": (
            lambda s, y: polyloss.sigmoid_crossentropy(s, y),
            lambda s, y: tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=s),
            lambda s, y: -(y * tf.math.log(tf.sigmoid(s)) + (1 - y) * tf.math.log(1 - tf.sigmoid(s))),
        ),
        "focal_loss (sigmoid)": (lambda s, y: polyloss.focal_loss(s, y, gamma=GAMMA, alpha=ALPHA), None, focal_port),
        "poly1_crossentropy": (
            lambda s, y: polyloss.poly1_crossentropy(s, y, epsilon=POLY_EPS),
            None,
            lambda s, y: (
                tf.nn.sparse_softmax_cross_entropy_with_logits(y, s)
                + POLY_EPS * (1 - tf.gather(tf.nn.softmax(s), y, batch_dims=1))
            ),
        ),
        "rdrop_loss": (lambda s, aux: polyloss.rdrop_loss(s, aux[0], aux[1], alpha=RDROP_ALPHA), None, rdrop_port),
        "squareplus": (lambda s, _: polyloss.squareplus(s), None, lambda s, _: (s + tf.sqrt(s * s + 4.0)) / 2),
    }


CANDIDATES = {
    "torch": torch_candidates,
    "torch.compile": torch_candidates,
    "jax": jax_candidates,
    "tensorflow": tf_candidates,
}
AUX = {
    "softmax_crossentropy": "ids",
    "softmax_crossentropy ε=0.1": "ids",
    "poly1_crossentropy": "ids",
    "sigmoid_crossentropy": "binary",
    "focal_loss (sigmoid)": "binary",
    "rdrop_loss": "rdrop",
    "squareplus": "ids",
}


#: (framework, row) pairs whose "native" is another function, a baseline to time against (no |Δ| of the values)
BASELINES = {("torch", "focal_loss (sigmoid)"), ("torch.compile", "focal_loss (sigmoid)")}


def saved_mib(fw, fn, logits, aux) -> float | None:
    """MiB of the tensors autograd keeps from the forward pass for the backward pass (torch eager: counted by
    ``saved_tensors_hooks``, each storage once; the inputs themselves excluded): the residuals of the loss."""
    torch = fw.torch
    seen, inputs = {}, {logits.untyped_storage().data_ptr()}
    for a in (aux if isinstance(aux, tuple) else (aux,)):
        inputs.add(a.untyped_storage().data_ptr())

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in inputs:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    x = logits.detach().requires_grad_(True)
    inputs.add(x.untyped_storage().data_ptr())
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn(x, aux).mean()
    except Exception:  # noqa: BLE001 - reported as "-"
        return None
    return sum(seen.values()) / 2**20


def run(fw, shape: Shape) -> list[tuple]:
    host = host_inputs(shape)
    dev = {
        k: fw.asarray(v.astype(np.int32) if k == "ids" and fw.name != "torch" and "torch" not in fw.name else v)
        for k, v in host.items()
    }
    dev["rdrop"] = (dev["logits_b"], dev["ids"])
    logits = dev["logits"]
    rows = []
    for loss, triple in CANDIDATES[fw.name](fw).items():
        if SELECTED and not any(s in loss for s in SELECTED):
            continue
        aux = dev[AUX[loss]]
        fns = {key: fn for key, fn in zip("pnh", triple) if fn is not None}
        calls, diffs = {}, {}
        reference = fw.to_numpy(fw.per_example(fns["p"])(logits, aux))
        for key, fn in fns.items():
            try:
                fb = fw.forward_backward(fn)
                fw.wait(fb(logits, aux))
                if key != "p" and not (key == "n" and (fw.name, loss) in BASELINES):
                    diffs[key] = float(np.max(np.abs(fw.to_numpy(fw.per_example(fn)(logits, aux)) - reference)))
            except Exception as exc:  # reported, not fatal: the other candidates still run
                print(f"  {loss} ({key}): {type(exc).__name__}: {exc}")
                continue
            calls[key] = lambda fb=fb: fw.wait(fb(logits, aux))
        saved = {k: saved_mib(fw, fn, logits, aux) for k, fn in fns.items()} if fw.name == "torch" else {}
        diffs.update({f"saved {k}": v for k, v in saved.items() if v is not None})
        cpu: dict = {}
        times = base.time_interleaved(calls, shape.repeats, cpu)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        cpu_med = {k: statistics.median(v) * 1e3 for k, v in cpu.items()}
        rows.append((loss, med, diffs, cpu_med))
    return rows


def report(label: str, rows: list[tuple]) -> None:
    print(f"\n{label}: forward+backward, median ms (ratio = polyloss / other; in parentheses the ratio of the "
          "median process CPU times; max |Δ| of the per-example values)")
    header = ("loss", "polyloss", "native", "port", "vs native", "vs port", "max Δ native", "max Δ port",
              "saved MiB p / n / h")
    table = []
    for loss, med, diffs, cpu in rows:

        def ratio(k):
            if k not in med:
                return "—"
            return f"{med['p'] / med[k]:.2f}x ({cpu['p'] / cpu[k]:.2f}x)" if cpu.get(k) else f"{med['p'] / med[k]:.2f}x"

        table.append(
            (
                loss,
                f"{med['p']:.2f}",
                f"{med['n']:.2f}" if "n" in med else "—",
                f"{med['h']:.2f}",
                ratio("n"),
                ratio("h"),
                f"{diffs['n']:.1e}" if "n" in diffs else "—",
                f"{diffs['h']:.1e}" if "h" in diffs else "—",
                " / ".join(f"{diffs[f'saved {k}']:.1f}" if f"saved {k}" in diffs else "—" for k in "pnh"),
            )
        )
    base.print_table(header, table, right_from=1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (8)")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--examples", type=int, default=Shape.examples)
    parser.add_argument("--classes", type=int, default=Shape.classes)
    parser.add_argument("--repeats", type=int, help="timed rounds (default 20, 8 with --quick)")
    parser.add_argument("--losses", help="comma-separated substrings of the loss names to run (default: all)")
    base.add_common_options(parser)
    args = parser.parse_args(argv)
    base.apply_common_options(args)
    global SELECTED
    SELECTED = [s for s in (args.losses or "").split(",") if s]
    shape = Shape(args.examples, args.classes, args.repeats or (8 if args.quick else Shape.repeats))
    print(
        f"logits float32 [{shape.examples}, {shape.classes}]; binary labels 1% positives; "
        f"{shape.repeats} rounds; {os.cpu_count()} CPUs; torch device {args.device}; "
        f"threads {args.threads or 'default'}; load average {os.getloadavg()[0]:.2f}"
    )
    for name in args.frameworks.split(","):
        fw, line = base.load_framework(name)
        print(f"{name}: {line}")
        if fw is not None:
            report(fw.label, run(fw, shape))
    return 0


if __name__ == "__main__":
    sys.exit(main())
