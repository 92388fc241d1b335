"""FGM and VAT on a small text classifier, with a shift between training and test: test accuracy.

Sentences are generated (no text set ships with scikit-learn): four topics, each with twelve keywords,
among 200 filler words; a sentence holds one to three keywords of its topic and, half the time, one
keyword of another topic. Each topic's keywords come in two halves, *common* and *rare*:

- the 200 labelled training sentences draw their keywords from the common half 90 % of the time, and
  20 % of their labels are replaced by random ones (label noise);
- the test sentences draw them from the rare half 60 % of the time (the shift); a second test set is
  drawn as the training set was;
- 2000 unlabelled sentences are drawn as the test set is (in-domain text without labels).

The model embeds the tokens, averages the embeddings over the sentence (masked mean pooling) and
applies a linear layer. Four trainings, the same model, steps and softmax cross-entropy:

- plain;
- FGM (``polyloss.adversarial_loss`` on the embedding output, ε = 3 per sentence, padding excluded):
  the loss at the embeddings plus the loss at the embeddings moved by ε along the normalised gradient;
- VAT (``polyloss.vat_loss``, ε = 3, one power iteration) on the labelled and the unlabelled
  sentences of each step, added to the labelled loss: semi-supervised, it carries the labels from the
  common keywords to the rare ones that appear beside them in unlabelled text;
- FGM and VAT together.

    python examples/adversarial_text.py [--quick] [--plot adversarial.png]
"""

from __future__ import annotations

import numpy as np
import torch
from _shared import Timer, arguments, print_table, save_figure

import polyloss

torch.set_num_threads(1)  # small matrices: one thread is faster than two that wait for each other
TOPICS, PAD = 4, 0
COMMON = [range(10 + 12 * c, 16 + 12 * c) for c in range(TOPICS)]  # 10..57: six common keywords a topic
RARE = [range(16 + 12 * c, 22 + 12 * c) for c in range(TOPICS)]  # six rare ones
FILLER = range(100, 300)
VOCABULARY, LENGTH = 300, 20
EPSILON = 3.0


def sentences(rng, n, *, rare, noise=0.0):
    """``tokens [n, L]`` (0 at padding) and labels ``[n]``: keywords from the rare half with probability
    ``rare``, a fraction ``noise`` of the labels replaced by random ones."""
    tokens = np.zeros((n, LENGTH), dtype=np.int64)
    labels = rng.integers(0, TOPICS, size=n)
    for b in range(n):
        length = int(rng.integers(10, LENGTH + 1))
        row = rng.choice(FILLER, size=length)
        count = int(rng.integers(1, 4))
        places = rng.choice(length, size=count + 1, replace=False)
        topics = [labels[b]] * count + [(labels[b] + rng.integers(1, TOPICS)) % TOPICS]  # the last: a distractor
        for place, topic in zip(places[:count + int(rng.random() < 0.5)], topics):
            row[place] = rng.choice(RARE[topic] if rng.random() < rare else COMMON[topic])
        tokens[b, :length] = row
    labels = np.where(rng.random(n) < noise, rng.integers(0, TOPICS, size=n), labels)
    return torch.as_tensor(tokens), torch.as_tensor(labels)


class Classifier(torch.nn.Module):
    def __init__(self, dim=32):
        super().__init__()
        self.embed = torch.nn.Embedding(VOCABULARY, dim, padding_idx=PAD)
        self.head = torch.nn.Linear(dim, TOPICS)

    def logits(self, embedded, mask):
        """The rest of the model after the embedding layer: masked mean pooling, then the linear layer."""
        weights = mask[..., None].to(embedded.dtype)
        return self.head((embedded * weights).sum(1) / weights.sum(1))


def accuracy(model, tokens, labels):
    with torch.no_grad():
        predicted = model.logits(model.embed(tokens), tokens != PAD).argmax(-1)
    return float((predicted == labels).float().mean())


def train(labelled, unlabelled, test, *, fgm, vat, epochs, seed):
    """Train one classifier; returns it and the shifted test accuracy after every epoch."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)  # VAT's random starts
    model = Classifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-2)
    tokens, labels = labelled
    steps = (len(tokens) + 31) // 32
    curve = []
    for _ in range(epochs):
        unlabelled_batches = torch.randperm(len(unlabelled)).split(len(unlabelled) // steps)
        for step, batch in enumerate(torch.randperm(len(tokens)).split(32)):
            mask = tokens[batch] != PAD
            embedded = model.embed(tokens[batch])

            def loss_fn(e, mask=mask, batch=batch):  # the labelled loss as a function of the embedded inputs
                return polyloss.softmax_crossentropy(model.logits(e, mask), labels[batch]).mean()

            if fgm:  # padding is neither normalised nor perturbed
                loss, adversarial = polyloss.adversarial_loss(loss_fn, embedded, epsilon=EPSILON, scope="example",
                                                              where=mask[..., None])
                loss = loss + adversarial
            else:
                loss = loss_fn(embedded)
            if vat:  # on the labelled and the unlabelled sentences of this step
                both = torch.cat([tokens[batch], unlabelled[unlabelled_batches[step]]])
                both_mask = both != PAD
                divergence = polyloss.vat_loss(lambda e, m=both_mask: model.logits(e, m), model.embed(both),
                                               epsilon=EPSILON, key=generator, where=both_mask[..., None])
                loss = loss + divergence.mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        curve.append(accuracy(model, *test))
    return model, curve


def main():
    args = arguments(__doc__.splitlines()[0])
    rng = np.random.default_rng(args.seed)
    labelled = sentences(rng, 200, rare=0.1, noise=0.2)
    unlabelled, _ = sentences(rng, 2000, rare=0.6)
    shifted_test = sentences(rng, 1000, rare=0.6)
    training_like_test = sentences(rng, 1000, rare=0.1)
    epochs = 2 if args.quick else 30

    methods = {"plain": (False, False), f"FGM (eps={EPSILON:g})": (True, False),
               f"VAT (eps={EPSILON:g}, + unlabelled)": (False, True), "FGM + VAT": (True, True)}
    rows, curves = [], {}
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # torch's one-time imports, outside the timings
    for name, (fgm, vat) in methods.items():
        with Timer() as timer:
            model, curves[name] = train(labelled, unlabelled, shifted_test, fgm=fgm, vat=vat, epochs=epochs,
                                        seed=args.seed)
        rows.append((name, accuracy(model, *training_like_test), accuracy(model, *shifted_test),
                     f"{timer.seconds:.1f}"))
    print_table(f"test accuracy, 4 topics ({len(labelled[0])} labelled training sentences with 20 % label noise, "
                f"{len(unlabelled)} unlabelled; {epochs} epochs)",
                ("training", "test as training", "shifted test", "train s"), rows)

    def draw(plt):
        for name, curve in curves.items():
            plt.plot(range(1, epochs + 1), curve, label=name)
        plt.xlabel("epoch")
        plt.ylabel("accuracy, shifted test")
        plt.title("adversarial and virtual adversarial training")
        plt.legend(fontsize=8)

    save_figure(args.plot, draw)


if __name__ == "__main__":
    main()
