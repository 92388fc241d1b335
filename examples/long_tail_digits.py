"""Focal loss and logit adjustment against plain cross-entropy on an artificially long-tailed digits.

The training split of scikit-learn's digits keeps ``n_k ∝ ρ^(k/9)`` images of digit k (ρ = 1/50: 100+
images of 0, a handful of 9s); the test split stays balanced, so the score is the balanced accuracy
(the mean of the per-class recalls). Four models, the same network and steps:

- plain softmax cross-entropy (``polyloss.softmax_crossentropy``),
- the same model with the prior subtracted after training (``polyloss.adjust_logits``, post-hoc),
- focal loss (``polyloss.focal_loss(activation="softmax", gamma=2)``),
- logit-adjusted cross-entropy (``polyloss.logit_adjusted_crossentropy`` with the training prior,
  Menon et al. 2020; kexue 7615), whose raw logits are already balanced.

    python examples/long_tail_digits.py [--quick] [--plot long_tail.png]
"""

from __future__ import annotations

import numpy as np
import torch
from _shared import Timer, arguments, print_table, save_figure
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import polyloss

torch.set_num_threads(1)  # small matrices: one thread is faster than two that wait for each other
IMBALANCE = 50.0


def long_tailed(x, y, rng):
    """Keep ``n_max · ρ^(k/9)`` training images of class k."""
    n_max = np.bincount(y).min()
    keep = []
    for k in range(10):
        members = np.flatnonzero(y == k)
        count = max(2, int(round(n_max * IMBALANCE ** (-k / 9))))
        keep.extend(rng.choice(members, size=count, replace=False))
    keep = np.sort(np.array(keep))
    return x[keep], y[keep]


def recalls(logits, labels) -> np.ndarray:
    """The recall of each class; their mean is the balanced accuracy."""
    pred = np.asarray(logits).argmax(-1)
    return np.array([np.mean(pred[labels == k] == k) for k in range(10)])


def train(loss, x, y, *, epochs, seed):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Tanh(), torch.nn.Linear(64, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    curve = []
    for _ in range(epochs):
        total = 0.0
        for batch in torch.randperm(len(x)).split(64):
            value = loss(model(x[batch]), y[batch]).mean()
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            total += float(value.detach()) * len(batch)
        curve.append(total / len(x))
    return model, curve


def main():
    args = arguments(__doc__.splitlines()[0])
    rng = np.random.default_rng(args.seed)
    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, data.target, test_size=0.5, stratify=data.target,
                                                        random_state=args.seed)
    x_train, y_train = long_tailed(x_train, y_train, rng)
    prior = np.bincount(y_train, minlength=10) / len(y_train)
    epochs = 3 if args.quick else 60

    losses = {
        "cross-entropy": lambda s, y: polyloss.softmax_crossentropy(s, y),
        "focal (gamma=2)": lambda s, y: polyloss.focal_loss(s, y, gamma=2.0, activation="softmax"),
        "logit-adjusted CE": lambda s, y: polyloss.logit_adjusted_crossentropy(s, y, prior),
    }
    rows, per_class = [], {}
    test = torch.as_tensor(x_test)
    for name, loss in losses.items():
        with Timer() as timer:
            model, _ = train(loss, x_train, y_train, epochs=epochs, seed=args.seed)
        with torch.no_grad():
            logits = model(test)
        per_class[name] = recalls(logits, y_test)
        rows.append((name, float(per_class[name].mean()), f"{timer.seconds:.1f}"))
        if name == "cross-entropy":  # the same model, its decisions moved after training
            name = "cross-entropy + post-hoc adjust_logits"
            per_class[name] = recalls(polyloss.adjust_logits(logits, prior), y_test)
            rows.append((name, float(per_class[name].mean()), "-"))

    counts = ", ".join(str(c) for c in np.bincount(y_train, minlength=10))
    print_table(f"balanced accuracy on the balanced test split ({len(y_test)} digits); training images per "
                f"digit 0..9: {counts}; {epochs} epochs", ("loss", "balanced accuracy", "train s"), rows)

    def draw(plt):
        for name, recall in per_class.items():
            plt.plot(range(10), recall, marker="o", label=name)
        plt.xticks(range(10))
        plt.xlabel("digit (training images: many -> few)")
        plt.ylabel("recall (test)")
        plt.title(f"per-class recall, long-tailed digits ({IMBALANCE:.0f}:1)")
        plt.legend(fontsize=8)

    save_figure(args.plot, draw)


if __name__ == "__main__":
    main()
