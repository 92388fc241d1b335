"""AM-Softmax and ArcFace embeddings on digits: retrieval accuracy on seen and unseen digits.

An embedding network (64 pixels -> 32 dimensions, L2-normalised) and one centre per class are
trained on the digits 0-6 of scikit-learn's digits with three heads on the cosines
``cos θ = ⟨x̂, ŵ_k⟩``: plain normalised softmax (``softmax_crossentropy(30 cos θ)``),
``polyloss.am_softmax`` (additive margin, kexue 5743) and ``polyloss.arcface`` (angular margin).
Retrieval accuracy is leave-one-out nearest neighbour by cosine among the test images: of the seen
digits 0-6, and of the digits 7-9 that the network never saw.

    python examples/margin_embeddings_digits.py [--quick] [--plot margins.png]
"""

from __future__ import annotations

import numpy as np
import torch
from _shared import Timer, arguments, print_table, save_figure
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import polyloss

torch.set_num_threads(1)  # small matrices: one thread is faster than two that wait for each other
SEEN = 7  # digits 0..6 train the network; 7, 8, 9 are unseen


class Embedder(torch.nn.Module):
    def __init__(self, classes: int, dim: int = 32):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Tanh(), torch.nn.Linear(128, dim))
        self.centres = torch.nn.Parameter(torch.randn(classes, dim))

    def embed(self, x):
        return torch.nn.functional.normalize(self.net(x), dim=-1)

    def forward(self, x):
        return self.embed(x) @ torch.nn.functional.normalize(self.centres, dim=-1).T  # cosines [N, C]


def retrieval_accuracy(embeddings: torch.Tensor, labels: np.ndarray) -> float:
    """Leave-one-out nearest neighbour (cosine): the fraction of images whose neighbour shows the same digit."""
    similarity = embeddings @ embeddings.T
    similarity.fill_diagonal_(-2.0)
    return float(np.mean(labels[similarity.argmax(-1).numpy()] == labels))


def main():
    args = arguments(__doc__.splitlines()[0])
    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, data.target, test_size=0.4, stratify=data.target,
                                                        random_state=args.seed)
    seen = y_train < SEEN
    x_train, y_train = torch.as_tensor(x_train[seen]), torch.as_tensor(y_train[seen])
    epochs = 2 if args.quick else 40
    heads = {
        "normalised softmax (s=30)": lambda cos, y: polyloss.softmax_crossentropy(30.0 * cos, y),
        "AM-Softmax (s=30, m=0.35)": lambda cos, y: polyloss.am_softmax(cos, y, scale=30.0, margin=0.35),
        "ArcFace (s=30, m=0.3)": lambda cos, y: polyloss.arcface(cos, y, scale=30.0, margin=0.3),
    }
    rows, curves = [], {}
    for name, head in heads.items():
        torch.manual_seed(args.seed)
        model = Embedder(SEEN)
        optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
        curves[name] = []
        with Timer() as timer:
            for _ in range(epochs):
                total = 0.0
                for batch in torch.randperm(len(x_train)).split(64):
                    loss = head(model(x_train[batch]), y_train[batch]).mean()
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    total += float(loss.detach()) * len(batch)
                curves[name].append(total / len(x_train))
        with torch.no_grad():
            embeddings = model.embed(torch.as_tensor(x_test))
        known = y_test < SEEN
        rows.append((name, retrieval_accuracy(embeddings[known], y_test[known]),
                     retrieval_accuracy(embeddings[~known], y_test[~known]), f"{timer.seconds:.1f}"))

    print_table(f"nearest-neighbour retrieval accuracy on the test images ({epochs} epochs on digits 0-{SEEN - 1})",
                ("head", f"seen digits 0-{SEEN - 1}", f"unseen digits {SEEN}-9", "train s"), rows)

    def draw(plt):
        for name, curve in curves.items():
            plt.plot(range(1, len(curve) + 1), curve, label=name)
        plt.yscale("log")
        plt.xlabel("epoch")
        plt.ylabel("training loss")
        plt.title("training loss by head (a margin keeps the loss up)")
        plt.legend(fontsize=8)

    save_figure(args.plot, draw)


if __name__ == "__main__":
    main()
