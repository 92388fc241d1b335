"""A toy named-entity tagger with a linear-chain CRF against per-token softmax: entity F1.

Sentences are generated from a small grammar (no NER set ships with scikit-learn), tagged in BIO
with three entity types (PER, LOC, ORG). An entity is a head word of its type, then zero to two
continuation words. Two kinds of continuation word make a token's tag depend on the tag before it:

- *shared* words continue entities of every type: ``I-PER``, ``I-LOC`` or ``I-ORG`` according to
  the entity they continue;
- *modifier* words continue entities too, but are ``O`` more often than not (they also occur
  between entities). The token after an entity is never a modifier.

The emissions come from each token alone (an embedding and a linear layer), so every bit of context
must come from the tags. Four taggers, the same emission model and steps:

- per-token softmax cross-entropy, decoded by argmax: it picks a shared word's most frequent
  type (a ``B-PER I-LOC`` mix-up is ill-formed BIO) and ``O`` for every modifier;
- the same model decoded by Viterbi under the BIO constraints of ``polyloss.allowed_transitions``
  (zero transition scores, forbidden moves ``-inf``): well-formed, types made consistent, modifiers
  still ``O``;
- a CRF (``polyloss.crf_nll``, learned transitions, start and end scores as torch parameters),
  decoded with ``polyloss.crf_decode``;
- the same CRF with the BIO constraints in training and decoding: no ill-formed sequence can come out.

Entity F1 by ``polyloss.metrics.span_f1`` on the spans read from the BIO tags (an ``I-X`` that does
not continue an X entity starts one, as conlleval reads it).

    python examples/crf_ner.py [--quick] [--plot crf.png]
"""

from __future__ import annotations

import numpy as np
import torch
from _shared import Timer, arguments, print_table, save_figure

import polyloss
from polyloss import metrics

torch.set_num_threads(1)  # small matrices: one thread is faster than two that wait for each other
TYPES = ("PER", "LOC", "ORG")
LABELS = ["O"] + [f"{prefix}-{t}" for t in TYPES for prefix in ("B", "I")]  # O, B-PER, I-PER, B-LOC, ...
PAD = 0
HEADS = {t: range(10 + 20 * k, 30 + 20 * k) for k, t in enumerate(TYPES)}  # 10..69: a type's head words
SHARED, MODIFIERS, FILLER = range(70, 90), range(90, 100), range(100, 200)
VOCABULARY, LENGTH = 200, 24


def sentence(rng):
    """Token ids and BIO tag ids of one generated sentence."""
    tokens, tags = [], []

    def other_words(n):
        for _ in range(n):  # filler, and a modifier a third of the time (tagged O)
            tokens.append(int(rng.choice(MODIFIERS if rng.random() < 1 / 3 else FILLER)))
            tags.append(0)

    other_words(rng.integers(0, 3))
    for _ in range(rng.integers(1, 4)):
        kind = int(rng.integers(0, len(TYPES)))
        tokens.append(int(rng.choice(HEADS[TYPES[kind]])))
        tags.append(1 + 2 * kind)  # B-type
        for _ in range(rng.integers(0, 3)):
            tokens.append(int(rng.choice(SHARED if rng.random() < 0.6 else MODIFIERS)))
            tags.append(2 + 2 * kind)  # I-type
        tokens.append(int(rng.choice(FILLER)))  # the token after an entity: never a modifier
        tags.append(0)
        other_words(rng.integers(0, 3))
    return tokens[:LENGTH], tags[:LENGTH]


def batch_of(rng, n):
    """``tokens [n, L]``, ``tags [n, L]`` (0 at padding) and ``mask [n, L]``."""
    tokens = np.zeros((n, LENGTH), dtype=np.int64)
    tags = np.zeros((n, LENGTH), dtype=np.int64)
    for b in range(n):
        ids, labels = sentence(rng)
        tokens[b, :len(ids)], tags[b, :len(ids)] = ids, labels
    return torch.as_tensor(tokens), torch.as_tensor(tags), torch.as_tensor(tokens != PAD)


class Tagger(torch.nn.Module):
    """Emissions from each token alone; transitions, start and end scores for the CRF."""

    def __init__(self, dim=32):
        super().__init__()
        self.embed = torch.nn.Embedding(VOCABULARY, dim, padding_idx=PAD)
        self.emit = torch.nn.Linear(dim, len(LABELS))
        self.transitions = torch.nn.Parameter(torch.zeros(len(LABELS), len(LABELS)))  # [from, to]
        self.start = torch.nn.Parameter(torch.zeros(len(LABELS)))
        self.end = torch.nn.Parameter(torch.zeros(len(LABELS)))

    def forward(self, tokens):
        return self.emit(self.embed(tokens))  # [B, L, K]


ALLOWED, FIRST_OK, LAST_OK = (torch.as_tensor(m) for m in polyloss.allowed_transitions(LABELS, "BIO"))


def chain_scores(model, constrained):
    """``(transitions, start, end)``: the learned scores, with ``-inf`` where BIO forbids a move."""
    if not constrained:
        return model.transitions, model.start, model.end
    return (torch.where(ALLOWED, model.transitions, -torch.inf), torch.where(FIRST_OK, model.start, -torch.inf),
            torch.where(LAST_OK, model.end, -torch.inf))


def bio_spans(tags, length):
    """The entities ``{(type, start, end)}`` of one BIO tag row (an ``I-X`` that does not continue an
    X entity starts one)."""
    spans, current = set(), None
    for t in range(length):
        label = LABELS[tags[t]]
        prefix, kind = (label.split("-") + [None])[:2]
        if prefix == "I" and current is not None and current[0] == kind:
            current[2] = t
            continue
        if current is not None:
            spans.add(tuple(current))
        current = [kind, t, t] if prefix in ("B", "I") else None
    if current is not None:
        spans.add(tuple(current))
    return spans


def ill_formed(tags, length) -> bool:
    """Whether a row breaks BIO: a first tag or a move that ``allowed_transitions`` forbids."""
    return length > 0 and (not FIRST_OK[tags[0]] or any(not ALLOWED[tags[t - 1], tags[t]] for t in range(1, length)))


def scores(predicted, gold, mask):
    """Token accuracy, entity precision, recall and F1, and the number of ill-formed rows."""
    lengths = mask.sum(-1).tolist()
    predicted, gold = predicted.tolist(), gold.tolist()
    pred_spans = [bio_spans(p, n) for p, n in zip(predicted, lengths)]
    gold_spans = [bio_spans(g, n) for g, n in zip(gold, lengths)]
    accuracy = sum(sum(p[t] == g[t] for t in range(n)) for p, g, n in zip(predicted, gold, lengths)) / sum(lengths)
    precision, recall, f1 = metrics.span_f1(pred_spans, gold_spans)
    return accuracy, precision, recall, f1, sum(ill_formed(p, n) for p, n in zip(predicted, lengths))


def train(train_set, test_set, *, crf, constrained, decoders, epochs, seed):
    """Train one tagger; after every epoch, the held-out entity F1 of each of its ``decoders``
    (``{name: constrained}``). Returns the model and the curves ``{name: [F1 per epoch]}``."""
    torch.manual_seed(seed)
    model = Tagger()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    tokens, tags, mask = train_set
    curves = {name: [] for name in decoders}
    for _ in range(epochs):
        for batch in torch.randperm(len(tokens)).split(64):
            emissions = model(tokens[batch])
            if crf:
                transitions, start, end = chain_scores(model, constrained)
                per_sentence = polyloss.crf_nll(emissions, tags[batch], transitions, mask=mask[batch], start=start,
                                                end=end)
                loss = per_sentence.sum() / mask[batch].sum()  # a mean over tokens, as the softmax's
            else:
                loss = polyloss.softmax_crossentropy(emissions[mask[batch]], tags[batch][mask[batch]]).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        for name, constrained_decoding in decoders.items():
            predicted = decode(model, test_set[0], test_set[2], crf=crf, constrained=constrained_decoding)
            curves[name].append(scores(predicted, test_set[1], test_set[2])[3])
    return model, curves


def decode(model, tokens, mask, *, crf, constrained):
    """The predicted tags ``[B, L]`` (-1 at padding)."""
    with torch.no_grad():
        emissions = model(tokens)
        if crf:
            transitions, start, end = chain_scores(model, constrained)
        elif constrained:  # the softmax model's log-probabilities, decoded under BIO alone
            emissions = torch.log_softmax(emissions, -1)
            zeros = torch.zeros(len(LABELS))
            transitions, start, end = (torch.where(ALLOWED, 0.0, -torch.inf), torch.where(FIRST_OK, 0.0, -torch.inf),
                                       zeros)
        else:
            return torch.where(mask, emissions.argmax(-1), -1)
        tags, _ = polyloss.crf_decode(emissions, transitions, mask=mask, start=start, end=end)
    return tags


def main():
    args = arguments(__doc__.splitlines()[0])
    rng = np.random.default_rng(args.seed)
    sizes = (150,) if args.quick else (150, 2000)
    full_train_set = batch_of(rng, sizes[-1])
    test_set = batch_of(rng, 500)
    epochs = 1 if args.quick else 6

    trainings = {  # (trained as a CRF, BIO constraints in training): {tagger: BIO constraints in decoding}
        (False, False): {"softmax per token, argmax": False, "softmax per token, BIO-constrained Viterbi": True},
        (True, False): {"CRF": False},
        (True, True): {"CRF with BIO constraints": True},
    }
    rows, curves = [], {}
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # torch's one-time imports, outside the timings
    for size in sizes:
        train_set = tuple(a[:size] for a in full_train_set)
        for (crf, constrained), decoders in trainings.items():
            with Timer() as timer:
                model, trained_curves = train(train_set, test_set, crf=crf, constrained=constrained,
                                              decoders=decoders, epochs=epochs, seed=args.seed)
            curves.update(trained_curves)  # the largest training set's, in the end
            for k, (name, constrained_decoding) in enumerate(decoders.items()):
                predicted = decode(model, test_set[0], test_set[2], crf=crf, constrained=constrained_decoding)
                rows.append((size, name, *scores(predicted, test_set[1], test_set[2]),
                             "-" if k else f"{timer.seconds:.1f}"))
    plural = "s" if epochs > 1 else ""
    print_table(f"scores on {len(test_set[0])} held-out sentences ({epochs} epoch{plural}; train s counts the "
                f"per-epoch evaluation)", ("sentences", "tagger", "token acc.", "precision", "recall", "entity F1",
                                           "ill-formed rows", "train s"), rows)
    transitions = chain_scores(model, constrained=True)[0].detach().numpy()

    def draw(plt):
        figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [1.3, 1]})
        for name, curve in curves.items():
            left.plot(range(1, epochs + 1), curve, marker="o", label=name)
        left.set_xlabel("epoch")
        left.set_ylabel("entity F1, held-out")
        left.set_title(f"entity F1 by epoch ({sizes[-1]} training sentences)")
        left.legend(fontsize=8, loc="center right")
        shown = np.where(np.isfinite(transitions), transitions, np.nan)  # forbidden moves left blank
        image = right.imshow(shown, cmap="coolwarm", vmin=-np.nanmax(np.abs(shown)), vmax=np.nanmax(np.abs(shown)))
        right.set_xticks(range(len(LABELS)), LABELS, rotation=90, fontsize=8)
        right.set_yticks(range(len(LABELS)), LABELS, fontsize=8)
        right.set_ylabel("from")
        right.set_title("learned transitions from -> to (BIO CRF)", fontsize=10)
        right.grid(False)
        figure.colorbar(image, ax=right)

    save_figure(args.plot, draw)

if __name__ == "__main__":
    main()
