"""CoSENT against a cosine-regression loss on generated sentence pairs: Spearman correlation.

The data is generated (no sentence-pair set ships with scikit-learn): every sentence has a hidden
meaning, a unit vector; its 24 tokens are drawn from a vocabulary of 300 whose words lean toward
meanings (a word is likely where its hidden direction agrees with the sentence's). A pair's gold score
is its meanings' cosine, graded 0..5 as in STS-B. The encoder is a bag of word embeddings (their mean)
and a pair is scored by the cosine of its two sentence vectors. Two losses train it:

- ``polyloss.cosent_loss`` (kexue 8847): every pair of pairs whose gold scores differ, ranked;
- the regression ``(cos - score / 5)²`` (sentence-transformers' ``CosineSimilarityLoss``).

STS is evaluated by the Spearman correlation (``polyloss.metrics.spearman``) between cosine and gold
score on held-out pairs.

    python examples/cosent_sentence_pairs.py [--quick] [--plot cosent.png]
"""

from __future__ import annotations

import numpy as np
import torch
from _shared import Timer, arguments, print_table, save_figure

import polyloss
from polyloss import metrics

torch.set_num_threads(1)  # small matrices: one thread is faster than two that wait for each other
VOCABULARY, MEANING_DIM, TOKENS = 300, 8, 24


def generate(rng, pairs: int, word_directions: np.ndarray):
    """``pairs`` sentence pairs as token ids ``[pairs, 2, TOKENS]`` and their graded gold scores 0..5."""
    a = rng.normal(size=(pairs, MEANING_DIM))
    noise = rng.uniform(0.0, 2.5, size=(pairs, 1))  # from paraphrases to unrelated sentences
    b = a + noise * rng.normal(size=(pairs, MEANING_DIM))
    meanings = np.stack([a, b], axis=1)
    meanings /= np.linalg.norm(meanings, axis=-1, keepdims=True)
    cosine = np.sum(meanings[:, 0] * meanings[:, 1], axis=-1)
    gold = np.round(5 * np.clip(cosine, 0.0, 1.0))
    logits = 6.0 * meanings @ word_directions.T  # [pairs, 2, VOCABULARY]
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    cumulative = p.cumsum(-1)[..., None, :]
    draws = rng.random((pairs, 2, TOKENS, 1))
    tokens = np.minimum((draws > cumulative).sum(-1), VOCABULARY - 1)
    return torch.as_tensor(tokens), torch.as_tensor(gold, dtype=torch.float32)


def main():
    args = arguments(__doc__.splitlines()[0])
    rng = np.random.default_rng(args.seed)
    directions = rng.normal(size=(VOCABULARY, MEANING_DIM))
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    train_tokens, train_gold = generate(rng, 4000, directions)
    test_tokens, test_gold = generate(rng, 1000, directions)
    epochs = 2 if args.quick else 25

    losses = {
        "CoSENT (scale 20)": lambda cos, gold: polyloss.cosent_loss(cos, gold, scale=20.0),
        "cosine regression (MSE)": lambda cos, gold: torch.mean((cos - gold / 5.0) ** 2),
    }
    rows, curves = [], {}
    for name, loss_fn in losses.items():
        torch.manual_seed(args.seed)
        encoder = torch.nn.EmbeddingBag(VOCABULARY, 32, mode="mean")

        def cosine(tokens, encoder=encoder):
            vectors = encoder(tokens.reshape(-1, TOKENS)).reshape(len(tokens), 2, -1)
            return torch.nn.functional.cosine_similarity(vectors[:, 0], vectors[:, 1], dim=-1)

        with torch.no_grad():
            before = float(metrics.spearman(cosine(test_tokens), test_gold))
        optimizer = torch.optim.Adam(encoder.parameters(), lr=5e-2)
        curves[name] = [before]
        with Timer() as timer:
            for _ in range(epochs):
                for batch in torch.randperm(len(train_tokens)).split(64):
                    loss = loss_fn(cosine(train_tokens[batch]), train_gold[batch])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                with torch.no_grad():
                    curves[name].append(float(metrics.spearman(cosine(test_tokens), test_gold)))
        rows.append((name, before, curves[name][-1], f"{timer.seconds:.1f}"))

    print_table(f"Spearman correlation of cosine and gold score on {len(test_gold)} held-out pairs ({epochs} epochs)",
                ("loss", "before training", "after", "train s"), rows)

    def draw(plt):
        for name, curve in curves.items():
            plt.plot(range(len(curve)), curve, label=name)
        plt.xlabel("epoch")
        plt.ylabel("Spearman (held-out pairs)")
        plt.title("CoSENT ranks pairs; the regression fits their cosines")
        plt.legend()

    save_figure(args.plot, draw)


if __name__ == "__main__":
    main()
