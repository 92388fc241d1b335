"""ZLPR (softmax + cross-entropy for multi-label, kexue 7359) against per-class binary cross-entropy.

The task: scikit-learn's 8x8 digits, each image tagged with 16 labels: the digit itself (10 one-hot
labels, 10% positives each) and 6 attributes of its shape (even, five or more, prime, has a loop,
straight strokes only, symmetric). The same small network is trained twice, once with
``polyloss.multilabel_crossentropy`` and once with ``polyloss.sigmoid_crossentropy`` summed over the
labels. ZLPR's decision threshold is 0 by construction; BCE's is a probability of 0.5 (logit 0), which
suits its rare labels less well, so BCE is also given its best threshold, fitted on a validation split
with ``polyloss.metrics.best_threshold`` (exact: one sort). Micro F1 on the test split.

    python examples/multilabel_zlpr_vs_bce.py [--quick] [--plot zlpr.png]
"""

from __future__ import annotations

import numpy as np
import torch
from _shared import Timer, arguments, print_table, save_figure
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import polyloss
from polyloss import metrics

torch.set_num_threads(1)  # small matrices: one thread is faster than two that wait for each other

ATTRIBUTES = {
    "even": {0, 2, 4, 6, 8},
    "five or more": {5, 6, 7, 8, 9},
    "prime": {2, 3, 5, 7},
    "has a loop": {0, 4, 6, 8, 9},
    "straight only": {1, 4, 7},
    "symmetric": {0, 1, 8},
}


def labels_of(digits: np.ndarray) -> np.ndarray:
    """``[N, 16]`` 0/1 labels: one-hot digit, then the attributes."""
    one_hot = digits[:, None] == np.arange(10)
    attributes = np.stack([np.isin(digits, sorted(members)) for members in ATTRIBUTES.values()], axis=1)
    return np.concatenate([one_hot, attributes], axis=1)


def train(loss_name: str, x, y, *, epochs: int, seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, y.shape[1]))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    for _ in range(epochs):
        for batch in torch.randperm(len(x)).split(256):
            logits = model(x[batch])
            if loss_name == "ZLPR":
                loss = polyloss.multilabel_crossentropy(logits, y[batch]).mean()
            else:  # per-class binary cross-entropy, summed over the labels of an example
                loss = polyloss.sigmoid_crossentropy(logits, y[batch]).sum(-1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model


def main():
    args = arguments(__doc__.splitlines()[0])
    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = labels_of(data.target).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.4, random_state=args.seed)
    x_val, x_test, y_val, y_test = train_test_split(x_test, y_test, test_size=0.5, random_state=args.seed)
    epochs = 2 if args.quick else 40

    rows, sweeps = [], {}
    thresholds = np.linspace(-4.0, 4.0, 161)
    for name in ("ZLPR", "BCE"):
        with Timer() as timer:
            model = train(name, x_train, y_train, epochs=epochs, seed=args.seed)
        with torch.no_grad():
            val, test = model(torch.as_tensor(x_val)), model(torch.as_tensor(x_test))
        y_val_t, y_test_t = torch.as_tensor(y_val), torch.as_tensor(y_test)
        f1_at_0 = float(metrics.precision_recall_f1(test, y_test_t, threshold=0.0)[2])
        best, _ = metrics.best_threshold(val, y_val_t)  # fitted on validation, applied to test
        f1_at_best = float(metrics.precision_recall_f1(test, y_test_t, threshold=float(best))[2])
        rows.append((name, f1_at_0, f"{float(best):+.3f}", f1_at_best, f"{timer.seconds:.1f}"))
        sweeps[name] = [float(metrics.precision_recall_f1(test, y_test_t, threshold=float(t))[2]) for t in thresholds]

    print_table(f"micro F1 on the test split ({len(x_test)} digits x 16 labels; {epochs} epochs)",
                ("loss", "F1 at logit 0", "best threshold (val)", "F1 at best", "train s"), rows)

    def draw(plt):
        for name, f1 in sweeps.items():
            plt.plot(thresholds, f1, label=name)
        plt.axvline(0.0, color="grey", lw=0.8)
        plt.xlabel("decision threshold on the logits")
        plt.ylabel("micro F1 (test)")
        plt.title("micro F1 against the decision threshold (test split)")
        plt.legend()

    save_figure(args.plot, draw)


if __name__ == "__main__":
    main()
