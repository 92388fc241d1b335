"""A toy named-entity recogniser with a GlobalPointer head: entity F1.

Sentences are generated from a small grammar (no NER set ships with scikit-learn). Three entity types,
each recognisable only from its context:

- PER: one or two name words after a title ("dr", "mr"); the same name words elsewhere are no entity;
- LOC: one or two place words after "in" or "from";
- ORG: one to three words ending in "inc".

The model embeds the tokens, runs a bidirectional GRU, and scores every span ``(i, j)`` of every
type with GlobalPointer (kexue 8373): ``q_i · k_j`` per type, padding and ``i > j`` masked to ``-inf``
with ``polyloss.global_pointer_mask``. It trains on ``polyloss.sparse_global_pointer_crossentropy``
(gold spans as ``(start, end)`` pairs, padded with -1) and is scored with
``polyloss.metrics.global_pointer_f1`` (spans whose logit is above 0) and, on decoded spans,
``polyloss.metrics.span_f1`` (the two agree).

    python examples/global_pointer_ner.py [--quick] [--plot ner.png]
"""

from __future__ import annotations

import numpy as np
import torch
from _shared import Timer, arguments, print_table, save_figure

import polyloss
from polyloss import metrics

torch.set_num_threads(1)  # small matrices: one thread is faster than two that wait for each other
TYPES = ("PER", "LOC", "ORG")
PAD, DR, MR, IN, FROM, INC = 0, 1, 2, 3, 4, 5
NAMES, PLACES, ORG_WORDS, FILLER = range(10, 40), range(40, 60), range(60, 80), range(80, 200)
VOCABULARY, LENGTH, MAX_SPANS = 200, 24, 4


def sentence(rng):
    """Token ids and gold spans ``(type, start, end)`` of one generated sentence."""
    tokens, spans = [], []
    for _ in range(rng.integers(2, 5)):
        tokens.extend(rng.choice(FILLER, size=rng.integers(1, 4)).tolist())
        kind = rng.integers(0, 4)
        if kind == 0:  # PER: a title, then 1-2 names
            tokens.append(int(rng.choice([DR, MR])))
            names = rng.choice(NAMES, size=rng.integers(1, 3)).tolist()
            spans.append((0, len(tokens), len(tokens) + len(names) - 1))
            tokens.extend(names)
        elif kind == 1:  # LOC: "in" / "from", then 1-2 places
            tokens.append(int(rng.choice([IN, FROM])))
            places = rng.choice(PLACES, size=rng.integers(1, 3)).tolist()
            spans.append((1, len(tokens), len(tokens) + len(places) - 1))
            tokens.extend(places)
        elif kind == 2:  # ORG: 1-2 words, then "inc"
            words = rng.choice(ORG_WORDS, size=rng.integers(1, 3)).tolist() + [INC]
            spans.append((2, len(tokens), len(tokens) + len(words) - 1))
            tokens.extend(words)
        else:  # distractors: names and places without their context
            tokens.extend(rng.choice(list(NAMES) + list(PLACES), size=rng.integers(1, 3)).tolist())
    tokens = tokens[:LENGTH]
    return tokens, [s for s in spans if s[2] < len(tokens)][:MAX_SPANS * len(TYPES)]


def batch_of(rng, n):
    """``tokens [n, L]``, ``mask [n, L]``, sparse spans ``[n, H, K, 2]`` (-1 padding), dense labels
    ``[n, H, L, L]`` and the span sets."""
    tokens = np.zeros((n, LENGTH), dtype=np.int64)
    sparse = np.full((n, len(TYPES), MAX_SPANS, 2), -1, dtype=np.int64)
    dense = np.zeros((n, len(TYPES), LENGTH, LENGTH), dtype=np.int64)
    sets = []
    for b in range(n):
        ids, spans = sentence(rng)
        tokens[b, :len(ids)] = ids
        used = [0] * len(TYPES)
        kept = set()
        for kind, start, end in spans:
            if used[kind] < MAX_SPANS and (kind, start, end) not in kept:
                sparse[b, kind, used[kind]] = (start, end)
                dense[b, kind, start, end] = 1
                used[kind] += 1
                kept.add((kind, start, end))
        sets.append(kept)
    as_tensor = torch.as_tensor
    return as_tensor(tokens), as_tensor(tokens != PAD), as_tensor(sparse), as_tensor(dense), sets


class Tagger(torch.nn.Module):
    def __init__(self, dim=48, head=16):
        super().__init__()
        self.embed = torch.nn.Embedding(VOCABULARY, dim, padding_idx=PAD)
        self.gru = torch.nn.GRU(dim, dim, batch_first=True, bidirectional=True)
        self.query = torch.nn.Linear(2 * dim, len(TYPES) * head)
        self.key = torch.nn.Linear(2 * dim, len(TYPES) * head)
        self.head = head

    def forward(self, tokens, mask):
        hidden, _ = self.gru(self.embed(tokens))  # [B, L, 2D]
        b, length, _ = hidden.shape
        q = self.query(hidden).view(b, length, len(TYPES), self.head).transpose(1, 2)  # [B, H, L, d]
        k = self.key(hidden).view(b, length, len(TYPES), self.head).transpose(1, 2)
        logits = q @ k.transpose(-1, -2) / self.head ** 0.5  # [B, H, L, L]
        return torch.where(polyloss.global_pointer_mask(mask), logits, -torch.inf)


def decoded(logits):
    """The predicted span sets ``{(type, start, end)}`` of each sentence (logit above 0)."""
    b, h, i, j = np.nonzero(logits.numpy() > 0)
    sets = [set() for _ in range(logits.shape[0])]
    for row, kind, start, end in zip(b, h, i, j):
        sets[row].add((int(kind), int(start), int(end)))
    return sets


def main():
    args = arguments(__doc__.splitlines()[0])
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    train = batch_of(rng, 200 if args.quick else 1000)
    test_tokens, test_mask, _, test_dense, test_sets = batch_of(rng, 300)
    epochs = 1 if args.quick else 6
    model = Tagger()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    history = []
    with Timer() as timer:
        for epoch in range(epochs):
            for batch in torch.randperm(len(train[0])).split(32):
                logits = model(train[0][batch], train[1][batch])
                loss = polyloss.sparse_global_pointer_crossentropy(logits, train[2][batch], pad_index=-1)
                loss = loss.sum(-1).mean()  # the sum over types, the mean over sentences
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                logits = model(test_tokens, test_mask)
            precision, recall, f1 = metrics.global_pointer_f1(logits, test_dense)
            history.append((epoch + 1, float(loss.detach()), float(precision), float(recall), float(f1)))
    _, _, span_level = metrics.span_f1(decoded(logits), [sorted(s) for s in test_sets])
    assert abs(span_level - history[-1][-1]) < 1e-6  # the two metrics count the same spans

    print_table(f"entity F1 on {len(test_sets)} held-out sentences ({len(train[0])} training sentences, "
                f"{timer.seconds:.1f} s)", ("epoch", "last batch loss", "precision", "recall", "F1"),
                history)
    per_type = [(name, metrics.span_f1([{s for s in p if s[0] == k} for p in decoded(logits)],
                                       [{s for s in t if s[0] == k} for t in test_sets])[2])
                for k, name in enumerate(TYPES)]
    print_table("entity F1 by type", ("type", "F1"), per_type)

    def draw(plt):
        epochs_seen = [h[0] for h in history]
        plt.plot(epochs_seen, [h[2] for h in history], label="precision")
        plt.plot(epochs_seen, [h[3] for h in history], label="recall")
        plt.plot(epochs_seen, [h[4] for h in history], label="F1")
        plt.xlabel("epoch")
        plt.ylabel("entity level, held-out")
        plt.title("GlobalPointer on a toy NER task")
        plt.legend()

    save_figure(args.plot, draw)


if __name__ == "__main__":
    main()
