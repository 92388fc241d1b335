"""Reference (oracle) versions of SPEC section F: linear-chain CRF, MEMM / Bi-MEMM, tag constraints.

Plain NumPy float64 and Python ``math``, sequence by sequence, straight from the definitions; no code
is shared with the array-API core. Being obviously right (and accurate) is the goal, not speed.

Notation (batch first). ``emissions`` e is [B, T, K], ``transitions`` A is [K, K] indexed
``[from, to]``, ``start`` s and ``end`` u are optional [K] scores, ``mask`` [B, T] is True at the real
tokens, which form one contiguous run per row (left or right padding). For a row whose real tokens
are t_1 < ... < t_n, a path is a tag sequence y = (y_1, ..., y_n) over the real tokens and its score is

    S(y) = s[y_1] + Σ_{i=1..n} e[t_i, y_i] + Σ_{i=2..n} A[y_{i-1}, y_i] + u[y_n]

(s and u are left out when not given; for n = 1 both apply to the one token). Then (kexue 5542)

    log Z   = log Σ_y e^{S(y)}                      crf_log_partition
    nll(y)  = log Z - S(y) = -log P(y)              crf_nll (summed over the tokens: no mean)
    μ[t, k] = Σ_{y : y at t = k} e^{S(y) - log Z}   crf_marginals (= ∂ log Z / ∂ e[t, k])
    decode  = argmax_y S(y), with its score         crf_decode

and the MEMM (kexue 7213) normalises each step locally instead of the whole path:

    memm_nll(y) = -log softmax(e[t_1, ·])[y_1] - Σ_{i=2..n} log softmax(A[y_{i-1}, ·] + e[t_i, ·])[y_i]

summed over the tokens, like the CRF (SPEC "Traps" 5 lists the source's MEMM as a token mean:
divide by n for that scale). ``direction="backward"`` is the same on the reversed sequence with the
transposed transitions (step i conditions on y_{i+1} through A[·, y_{i+1}]); ``"both"`` (Bi-MEMM) is
the average of the two directions.

How the reference computes them. Every path over the real tokens is enumerated
(``itertools.product``) when there are at most ``_BRUTE_FORCE_LIMIT`` (10^5) of them, i.e. K^n paths;
each path's score is an exactly rounded sum (``math.fsum``) of its terms, differences of two path
scores are exactly rounded sums of the two term lists, and
``log Σ_y e^{S(y)} = S(ŷ) + log1p(Σ_{y ≠ ŷ} e^{S(y) - S(ŷ)})`` with ŷ the best path. So log Z, the
marginals and the nll (as ``S(ŷ) - S(y) + log1p(...)``, which keeps its precision when it is close to
0) are accurate to a few ulps. Longer sequences use a plain-loop forward / backward algorithm (a
max-shifted log-sum-exp with ``fsum`` at each step; the nll is then ``max(0, log Z - S(y))``, accurate
to a few ulps of log Z per token) and a Viterbi on exact rational scores (``fractions.Fraction``); the
two methods agree wherever both run (tested; the decoded paths and scores are identical).

Conventions (shared by every function):

* A real token's emission, a transition, a start or an end score equal to ``-inf`` is a hard
  constraint: a path using it is impossible (weight 0). Scores at masked positions are ignored,
  whatever their value (NaN and infinities included), and so are the tags there, even out of range.
* If the gold path is impossible, ``crf_nll`` (and ``memm_nll``) is ``+inf``.
* If every path of a row is impossible (no feasible path): ``crf_log_partition`` is ``-inf``,
  ``crf_nll`` is ``+inf`` (the gold path is impossible too, so the rule above applies; never
  ``-inf - (-inf) = NaN``), ``crf_marginals`` is 0 at every position (each (token, tag) lies on no
  path: an empty sum), and ``crf_decode`` returns the score ``-inf`` and ``fill`` at every position
  (there is no path to return). A MEMM step whose every tag is impossible makes the gold tag there
  impossible, so that ``memm_nll`` is ``+inf``.
* A row with no real token has one path, the empty one, of score 0: log partition 0, nll 0 (CRF and
  MEMM), marginals 0, decode score 0 and every tag ``fill``.
* NaN or ``+inf`` in a score that the row uses (an emission at a real token, start / end when the row
  has a token, a transition when it has two; for the MEMM the transition rows of the gold tags) makes
  every output of that row NaN (decode: score NaN, tags ``fill``). ``+inf`` scores are outside the
  contract (a softmax over them is undefined).
* Decode ties. The path of largest *exact* score S(y) wins (scores are compared through the exactly
  rounded difference of their term lists, so paths tie only if their exact scores are equal). Among
  exactly tied paths, the one whose *last* tag is smallest wins, then the one whose tag before it is
  smallest, and so on: the smallest path in the lexicographic order of the reversed sequence
  (y_n, y_{n-1}, ..., y_1). This is what Viterbi gives with a backtrace when every argmax returns the
  first (smallest) index among equal values (``torch.argmax``, ``numpy.argmax``; pytorch-crf behaves
  so); for example with zero scores the decoded path is all zeros, and among the two tied paths
  (0, 1) and (1, 0) it is (1, 0).

``allowed_transitions`` builds the boolean constraint masks of the BIO (a synonym: IOB2) and IOBES
(a synonym: BIOES) tag schemes; use them as ``where(mask, scores, -inf)``.

Sources: kexue.fm/archives/5542 (CRF: path score, forward algorithm, Viterbi), kexue.fm/archives/7213
(MEMM and Bi-MEMM, per-step softmax, transposed transitions for the backward direction); Lafferty et
al. 2001, "Conditional Random Fields"; McCallum et al. 2000, "Maximum Entropy Markov Models"; Ramshaw
and Marcus 1995 / Tjong Kim Sang and Veenstra 1999 (IOB tagging), Ratinov and Roth 2009 (BILOU/IOBES).
"""

import itertools
import math
import numbers
from fractions import Fraction

import numpy as np

from polyloss.reference import _common

__all__ = [
    "crf_nll",
    "crf_log_partition",
    "crf_marginals",
    "crf_decode",
    "memm_nll",
    "allowed_transitions",
]

_INF = math.inf
_NAN = math.nan

# Rows with at most this many paths (K^n) are enumerated; longer ones use the plain-loop dynamic
# programmes. The tests lower / raise it to run both methods on the same rows.
_BRUTE_FORCE_LIMIT = 10**5

_MEMM_DIRECTIONS = ("forward", "backward", "both")
# scheme name -> canonical scheme
_SCHEMES = {"BIO": "BIO", "IOB2": "BIO", "IOBES": "IOBES", "BIOES": "IOBES"}
_SCHEME_PREFIXES = {"BIO": ("B", "I"), "IOBES": ("B", "I", "E", "S")}


# ---------------------------------------------------------------------------------------------
# exactly rounded sums and comparisons of term lists
# ---------------------------------------------------------------------------------------------


def _xsum(terms):
    """Σ terms, exactly rounded, for finite terms (the overflow of the exact partial sums included)."""
    try:
        return math.fsum(terms)
    except OverflowError:
        return sum(terms)


def _diff(a, b):
    """Σa - Σb, exactly rounded, for two lists of finite terms; its sign is the sign of the exact
    difference (an exactly rounded sum of floats is 0 only when the exact sum is 0)."""
    return _xsum(a + [-x for x in b])


def _lse(values):
    """log Σ e^v for floats in [-inf, inf): max-shifted, fsum; no values or all -inf gives -inf."""
    finite = [v for v in values if v != -_INF]
    if not finite:
        return -_INF
    m = max(finite)
    return m + math.log(math.fsum(math.exp(v - m) for v in finite))


def _bad(x):
    return math.isnan(x) or x == _INF


# ---------------------------------------------------------------------------------------------
# argument checks and conversions
# ---------------------------------------------------------------------------------------------


def _emissions_array(emissions):
    em = _common.real_array(emissions, "emissions")
    if em.ndim != 3:
        raise ValueError(f"emissions must have shape [B, T, K] (batch first), got shape {em.shape}")
    if em.shape[2] == 0:
        raise ValueError(f"emissions of shape {em.shape} have no tag (K = 0); K must be at least 1")
    return em


def _transitions_array(transitions, em):
    tr = _common.real_array(transitions, "transitions")
    k = em.shape[2]
    if tr.shape != (k, k):
        raise ValueError(
            f"transitions has shape {tr.shape} but emissions of shape {em.shape} need transitions of "
            f"shape [K, K] = {(k, k)}"
        )
    return tr


def _boundary_array(scores, name, em):
    if scores is None:
        return None
    a = _common.real_array(scores, name)
    k = em.shape[2]
    if a.shape != (k,):
        raise ValueError(
            f"{name} has shape {a.shape} but emissions of shape {em.shape} need {name} of shape [K] = {(k,)}"
        )
    return a


def _spans(mask, em):
    """The real tokens of each row as a half-open range (a, b); a row with none gives (0, 0)."""
    b_size, t_size = em.shape[:2]
    if mask is None:
        return [(0, t_size)] * b_size
    mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        raise TypeError(f"mask must be a boolean array (True = token), got dtype {mask.dtype}")
    if mask.shape != (b_size, t_size):
        raise ValueError(
            f"mask has shape {mask.shape} but emissions of shape {em.shape} need a mask of shape "
            f"[B, T] = {(b_size, t_size)}"
        )
    spans = []
    for row, m in enumerate(mask):
        idx = np.flatnonzero(m)
        if idx.size == 0:
            spans.append((0, 0))
            continue
        a, b = int(idx[0]), int(idx[-1]) + 1
        if b - a != idx.size:
            holes = [t for t in range(a, b) if not m[t]]
            raise ValueError(
                f"mask row {row} has holes: its tokens (True) must form one contiguous run (left or right "
                f"padding), but positions {holes} between its first token ({a}) and last token ({b - 1}) are False"
            )
        spans.append((a, b))
    return spans


def _gold_tags(tags, em, spans):
    """The tags at the real tokens of each row, as lists of ints, checked to lie in [0, K)."""
    tags = np.asarray(tags)
    if tags.dtype.kind not in "iu":
        raise TypeError(f"tags must be an integer array, got dtype {tags.dtype}")
    if tags.shape != em.shape[:2]:
        raise ValueError(
            f"tags has shape {tags.shape} but emissions of shape {em.shape} need tags of shape "
            f"[B, T] = {em.shape[:2]}"
        )
    k = em.shape[2]
    rows = []
    for row, (a, b) in enumerate(spans):
        gold = [int(y) for y in tags[row, a:b]]
        for t, y in zip(range(a, b), gold):
            if not 0 <= y < k:
                raise ValueError(f"tags[{row}, {t}] = {y} is outside [0, {k}) at a real token (mask True)")
        rows.append(gold)
    return rows


def _fill_value(fill):
    if isinstance(fill, (bool, np.bool_)) or not isinstance(fill, (numbers.Integral, np.integer)):
        raise TypeError(f"fill must be an int, got {fill!r}")
    return int(fill)


class _Row:
    """One sequence restricted to its n real tokens: Python lists of floats."""

    def __init__(self, em_row, tr, start, end):
        self.e = [[float(v) for v in tok] for tok in em_row]
        self.n = len(self.e)
        self.k = len(tr)
        self.tr = [[float(v) for v in r] for r in tr]
        self.start = None if start is None else [float(v) for v in start]
        self.end = None if end is None else [float(v) for v in end]

    def undefined(self):
        """NaN or +inf in a score that some path uses."""
        if self.n == 0:
            return False
        used = [v for tok in self.e for v in tok]
        if self.n >= 2:
            used += [v for r in self.tr for v in r]
        for extra in (self.start, self.end):
            if extra is not None:
                used += extra
        return any(_bad(v) for v in used)

    def terms(self, path):
        """The terms whose sum is S(path)."""
        out = []
        if self.start is not None:
            out.append(self.start[path[0]])
        prev = None
        for t, y in enumerate(path):
            if prev is not None:
                out.append(self.tr[prev][y])
            out.append(self.e[t][y])
            prev = y
        if self.end is not None:
            out.append(self.end[path[-1]])
        return out

    def brute_force(self):
        return self.k**self.n <= _BRUTE_FORCE_LIMIT


def _rows(emissions, transitions, mask, start, end):
    em = _emissions_array(emissions)
    tr = _transitions_array(transitions, em)
    st = _boundary_array(start, "start", em)
    en = _boundary_array(end, "end", em)
    spans = _spans(mask, em)
    rows = [_Row(em[i, a:b], tr, st, en) for i, (a, b) in enumerate(spans)]
    return em, spans, rows


# ---------------------------------------------------------------------------------------------
# enumeration of every path
# ---------------------------------------------------------------------------------------------


def _better(terms_a, path_a, terms_b, path_b):
    """Is path a preferred to path b: a larger exact score, or an exact tie and a smaller reversed path."""
    d = _diff(terms_a, terms_b)
    return d > 0 or (d == 0 and path_a[::-1] < path_b[::-1])


class _Enumeration:
    """Every feasible path of a row (finite scores only), its best path ŷ and the weights
    w(y) = e^{S(y) - S(ŷ)} (w(ŷ) = 1, ``rest`` = Σ_{y≠ŷ} w(y), exactly rounded)."""

    def __init__(self, row):
        self.paths, self.terms = [], []
        for path in itertools.product(range(row.k), repeat=row.n):
            terms = row.terms(path)
            if -_INF in terms:
                continue
            self.paths.append(path)
            self.terms.append(terms)
        self.best = None
        if not self.paths:
            return
        scores = [_xsum(t) for t in self.terms]
        top = max(scores)
        best = None
        for i, s in enumerate(scores):  # only rounded maxima can be exact maxima
            if s == top and (best is None or _better(self.terms[i], self.paths[i], self.terms[best], self.paths[best])):
                best = i
        self.best = best
        self.weights = [1.0 if i == best else math.exp(_diff(t, self.terms[best])) for i, t in enumerate(self.terms)]
        self.rest = math.fsum(w for i, w in enumerate(self.weights) if i != best)

    def log_partition(self):
        if self.best is None:
            return -_INF
        return _xsum(self.terms[self.best]) + math.log1p(self.rest)

    def nll(self, gold_terms):
        # S(ŷ) - S(y) + log1p(rest): 0 < ... and accurate when the gold path is the best one
        return _diff(self.terms[self.best], gold_terms) + math.log1p(self.rest)

    def marginals(self, n, k):
        out = [[0.0] * k for _ in range(n)]
        if self.best is None:
            return out
        total = 1.0 + self.rest
        for t in range(n):
            parts = [[] for _ in range(k)]
            for path, w in zip(self.paths, self.weights):
                parts[path[t]].append(w)
            out[t] = [math.fsum(p) / total for p in parts]
        return out

    def decode(self):
        if self.best is None:
            return None, -_INF
        return list(self.paths[self.best]), _xsum(self.terms[self.best])


# ---------------------------------------------------------------------------------------------
# plain-loop dynamic programmes (long rows)
# ---------------------------------------------------------------------------------------------


def _forward(row):
    """α[t][j] = log Σ over the paths of the first t+1 tokens ending in j of e^{score so far}
    (start included, end not): α[0][j] = s[j] + e[0][j], α[t][j] = lse_i(α[t-1][i] + A[i][j]) + e[t][j]."""
    alpha = []
    for t in range(row.n):
        if t == 0:
            prev = [row.e[0][j] + (0.0 if row.start is None else row.start[j]) for j in range(row.k)]
        else:
            prev = [
                _lse([alpha[-1][i] + row.tr[i][j] for i in range(row.k)]) + row.e[t][j]
                for j in range(row.k)
            ]
        alpha.append(prev)
    return alpha


def _backward(row):
    """β[t][i] = log Σ over the continuations of a path at tag i on token t of e^{their score}
    (end included): β[n-1][i] = u[i], β[t][i] = lse_j(A[i][j] + e[t+1][j] + β[t+1][j])."""
    beta = [None] * row.n
    beta[row.n - 1] = [0.0 if row.end is None else row.end[i] for i in range(row.k)]
    for t in range(row.n - 2, -1, -1):
        beta[t] = [
            _lse([row.tr[i][j] + row.e[t + 1][j] + beta[t + 1][j] for j in range(row.k)])
            for i in range(row.k)
        ]
    return beta


def _log_partition_dp(row, alpha):
    last = alpha[-1]
    return _lse([last[j] + (0.0 if row.end is None else row.end[j]) for j in range(row.k)])


def _viterbi(row):
    """The exact Viterbi: δ[t][j] = the largest score of a path of the first t+1 tokens ending in j,
    kept as an exact rational (``Fraction``: every float is one, and sums of them are exact), with
    the back-pointer to its tag at token t-1. Predecessors are tried in increasing order and replaced
    only by a strictly larger score, so the back-pointers pick the smallest tag among exact ties,
    which yields the tie rule of the module (smallest reversed path). The score returned is the exact
    score rounded once (``float(Fraction)`` is correctly rounded, like ``fsum``)."""
    k = row.k
    delta = []
    for j in range(k):
        terms = ([] if row.start is None else [row.start[j]]) + [row.e[0][j]]
        delta.append(None if -_INF in terms else sum(map(Fraction, terms)))
    back = []
    for t in range(1, row.n):
        new, pointers = [], []
        for j in range(k):
            best, arg = None, None
            if row.e[t][j] != -_INF:
                for i in range(k):
                    if delta[i] is None or row.tr[i][j] == -_INF:
                        continue
                    score = delta[i] + Fraction(row.tr[i][j])
                    if best is None or score > best:
                        best, arg = score, i
            new.append(None if best is None else best + Fraction(row.e[t][j]))
            pointers.append(arg)
        delta = new
        back.append(pointers)
    best, last = None, None
    for j in range(k):
        if delta[j] is None or (row.end is not None and row.end[j] == -_INF):
            continue
        score = delta[j] + (0 if row.end is None else Fraction(row.end[j]))
        if best is None or score > best:
            best, last = score, j
    if best is None:
        return None, -_INF
    path = [last]
    for pointers in reversed(back):
        path.append(pointers[path[-1]])
    return path[::-1], float(best)


# ---------------------------------------------------------------------------------------------
# per-row results
# ---------------------------------------------------------------------------------------------


def _row_log_partition(row):
    if row.n == 0:
        return 0.0
    if row.undefined():
        return _NAN
    if row.brute_force():
        return _Enumeration(row).log_partition()
    return _log_partition_dp(row, _forward(row))


def _row_nll(row, gold):
    if row.n == 0:
        return 0.0
    if row.undefined():
        return _NAN
    gold_terms = row.terms(gold)
    if -_INF in gold_terms:
        return _INF  # the gold path is impossible (and so when no path is feasible)
    if row.brute_force():
        return _Enumeration(row).nll(gold_terms)
    # log Z - S(y) is ≥ 0 exactly; rounding could take a near-certain path a few ulps below 0
    return max(0.0, _log_partition_dp(row, _forward(row)) - _xsum(gold_terms))


def _row_marginals(row):
    if row.n == 0:
        return []
    if row.undefined():
        return [[_NAN] * row.k for _ in range(row.n)]
    if row.brute_force():
        return _Enumeration(row).marginals(row.n, row.k)
    alpha = _forward(row)
    log_z = _log_partition_dp(row, alpha)
    if log_z == -_INF:
        return [[0.0] * row.k for _ in range(row.n)]
    beta = _backward(row)
    return [[math.exp(alpha[t][k] + beta[t][k] - log_z) for k in range(row.k)] for t in range(row.n)]


def _row_decode(row):
    if row.n == 0:
        return [], 0.0
    if row.undefined():
        return None, _NAN
    if row.brute_force():
        return _Enumeration(row).decode()
    return _viterbi(row)


# ---------------------------------------------------------------------------------------------
# F1. CRF negative log-likelihood, log partition, marginals
# ---------------------------------------------------------------------------------------------


def crf_nll(emissions, tags, transitions, *, mask=None, start=None, end=None):
    """Linear-chain CRF negative log-likelihood per sequence (reference).

        nll = log Z - S(y),   S(y) = s[y_1] + Σ_i e[t_i, y_i] + Σ_{i≥2} A[y_{i-1}, y_i] + u[y_n]

    over the real tokens t_1..t_n of each row, summed over the tokens (no mean), ≥ 0; log Z is
    ``crf_log_partition``. Source: kexue.fm/archives/5542.

    Parameters
    ----------
    emissions : array_like, real, [B, T, K] (batch first)
    tags : array_like of int, [B, T]
        The gold tags; ignored at masked positions (any value), in [0, K) at real tokens (else
        ValueError).
    transitions : array_like, real, [K, K], indexed [from, to]
    mask : array_like of bool, [B, T], optional
        True at the real tokens: one contiguous run per row (left or right padding); holes are a
        ValueError naming the row. None: every position is a token.
    start, end : array_like, real, [K], optional
        Scores added at the first / last real token.

    Returns
    -------
    numpy.ndarray of float64, [B]. ``+inf`` where the gold path is impossible (a ``-inf`` score on it),
    also when no path is feasible; 0 for a row without tokens; NaN where a used score is NaN or +inf.

    Examples
    --------
    With zero scores the 2^2 paths of two tokens are equally likely: nll = log 4.

    >>> import numpy as np
    >>> float(np.round(crf_nll(np.zeros((1, 2, 2)), [[0, 1]], np.zeros((2, 2)))[0], 4))
    1.3863

    Forbid 0 -> 1: the paths (0,0), (1,0), (1,1) score 1, 0, 1 with the emissions below, so
    P(1, 1) = e / (2e + 1) and nll = log(2 + e^{-1}):

    >>> import math
    >>> e = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    >>> A = np.array([[0.0, -np.inf], [0.0, 0.0]])
    >>> float(np.round(crf_nll(e, [[1, 1]], A)[0], 6)), round(math.log(2 + math.exp(-1)), 6)
    (0.861995, 0.861995)
    >>> crf_nll(e, [[0, 1]], A)  # the gold path uses a forbidden transition
    array([inf])
    """
    em, spans, rows = _rows(emissions, transitions, mask, start, end)
    golds = _gold_tags(tags, em, spans)
    return np.array([_row_nll(row, gold) for row, gold in zip(rows, golds)], dtype=np.float64)


def crf_log_partition(emissions, transitions, *, mask=None, start=None, end=None):
    """log Z = log Σ_y e^{S(y)} per sequence over every tag path of its real tokens (reference).

    S(y) as in ``crf_nll``. ``-inf`` when no path is feasible (every path uses a ``-inf`` score),
    0 for a row without tokens. Source: kexue.fm/archives/5542 (the forward algorithm computes it
    as lse over the previous tag).

    Parameters and conventions as in ``crf_nll`` (no tags).

    Returns
    -------
    numpy.ndarray of float64, [B].

    Examples
    --------
    One token, no transition: log(e^0 + e^{log 3}) = log 4. Two tokens of zero scores: log 4 too.
    Adding start = [log 3, 0] to the first gives log(3 + 1 + 3 + 1) = log 8.

    >>> import numpy as np
    >>> e = np.zeros((2, 1, 2)); e[0, 0, 1] = np.log(3.0)
    >>> np.round(crf_log_partition(e, np.zeros((2, 2))), 4)
    array([1.3863, 0.6931])
    >>> np.round(crf_log_partition(np.zeros((1, 2, 2)), np.zeros((2, 2)), start=[np.log(3.0), 0.0]), 4)
    array([2.0794])
    """
    _, _, rows = _rows(emissions, transitions, mask, start, end)
    return np.array([_row_log_partition(row) for row in rows], dtype=np.float64)


def crf_marginals(emissions, transitions, *, mask=None, start=None, end=None):
    """Tag marginals μ[b, t, k] = P(y_t = k) under the CRF, per real token (reference).

        μ[t, k] = Σ_{y : y_t = k} e^{S(y) - log Z} = ∂ log Z / ∂ e[t, k]

    They sum to 1 over k at each real token of a row with a feasible path; 0 at masked positions and
    in a row with no feasible path (no path carries any mass); NaN in a row with a NaN or +inf used
    score. Source: kexue.fm/archives/5542 (S(y), Z); the forward-backward algorithm.

    Returns
    -------
    numpy.ndarray of float64, [B, T, K].

    Examples
    --------
    Two tokens, transitions forbidding 0 -> 1, zero emissions: the feasible paths are (0,0), (1,0),
    (1,1), so P(y_1 = 0) = 1/3 and P(y_2 = 0) = 2/3.

    >>> import numpy as np
    >>> A = np.array([[0.0, -np.inf], [0.0, 0.0]])
    >>> np.round(crf_marginals(np.zeros((1, 2, 2)), A), 4)
    array([[[0.3333, 0.6667],
            [0.6667, 0.3333]]])
    """
    em, spans, rows = _rows(emissions, transitions, mask, start, end)
    out = np.zeros(em.shape, dtype=np.float64)
    for i, ((a, b), row) in enumerate(zip(spans, rows)):
        if b > a:
            out[i, a:b] = np.array(_row_marginals(row), dtype=np.float64)
    return out


# ---------------------------------------------------------------------------------------------
# F2. Viterbi decoding
# ---------------------------------------------------------------------------------------------


def crf_decode(emissions, transitions, *, mask=None, start=None, end=None, fill=-1):
    """The best tag path ``argmax_y S(y)`` of each sequence and its score (reference).

    S(y) as in ``crf_nll``. Ties: the largest exact score wins; among exactly tied paths, the one
    whose last tag is smallest, then the tag before it, and so on (what Viterbi with first-index
    argmax and a backtrace gives). Source: kexue.fm/archives/5542 (Viterbi).

    Parameters
    ----------
    emissions, transitions, mask, start, end : as in ``crf_nll``
    fill : int
        The tag written at masked positions, at every position of a row without tokens, and at every
        position of a row with no feasible path (or a NaN / +inf used score).

    Returns
    -------
    (tags, scores): numpy.ndarray of int64 [B, T] and numpy.ndarray of float64 [B]. The score is the
    exactly rounded S(y) of the returned path; 0 for a row without tokens, ``-inf`` for a row with no
    feasible path, NaN for a row with a NaN or +inf used score.

    Examples
    --------
    Forbid 0 -> 1: (0,0) and (1,1) both score 1 (see ``crf_nll``); the tie goes to the path whose
    last tag is smaller, (0,0). Padding gets ``fill``.

    >>> import numpy as np
    >>> e = np.array([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    >>> A = np.array([[0.0, -np.inf], [0.0, 0.0]])
    >>> crf_decode(e, A, mask=np.array([[True, True, False]]))
    (array([[ 0,  0, -1]]), array([1.]))
    """
    fill = _fill_value(fill)
    em, spans, rows = _rows(emissions, transitions, mask, start, end)
    tags = np.full(em.shape[:2], fill, dtype=np.int64)
    scores = []
    for i, ((a, b), row) in enumerate(zip(spans, rows)):
        path, score = _row_decode(row)
        if path:
            tags[i, a:b] = path
        scores.append(score)
    return tags, np.array(scores, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# F3. MEMM / Bi-MEMM
# ---------------------------------------------------------------------------------------------


def _neg_log_share(candidates, gold):
    """-log(e^{S_gold} / Σ_c e^{S_c}) for term lists ``candidates`` (a softmax over their sums), as
    S_top - S_gold + log1p(Σ_{c≠top} e^{S_c - S_top}) with exactly rounded differences.
    NaN / +inf in a term gives NaN; a -inf term removes the candidate; the gold removed gives +inf."""
    if any(_bad(v) for c in candidates for v in c):
        return _NAN
    if -_INF in candidates[gold]:
        return _INF
    feasible = [c for c in candidates if -_INF not in c]
    top = feasible[0]
    for c in feasible[1:]:
        if _diff(c, top) > 0:
            top = c
    rest = math.fsum(math.exp(_diff(c, top)) for c in feasible if c is not top)
    return _diff(top, candidates[gold]) + math.log1p(rest)


def _memm_one_way(e, tr, gold):
    """Σ_i -log softmax(tr[y_{i-1}, ·] + e[i, ·])[y_i], the first step on e[0, ·] alone."""
    k = len(tr)
    steps = []
    for i, y in enumerate(gold):
        if i == 0:
            candidates = [[e[0][c]] for c in range(k)]
        else:
            candidates = [[tr[gold[i - 1]][c], e[i][c]] for c in range(k)]
        steps.append(_neg_log_share(candidates, y))
    return _common.fsum(steps) if steps else 0.0


def memm_nll(emissions, tags, transitions, *, mask=None, direction="forward"):
    """MEMM negative log-likelihood (local, per-step normalisation) per sequence (reference)::

        forward:  L = -log softmax(e[t_1, ·])[y_1] - Σ_{i≥2} log softmax(A[y_{i-1}, ·] + e[t_i, ·])[y_i]
        backward: the same on the reversed sequence with Aᵀ:
                  L = -log softmax(e[t_n, ·])[y_n] - Σ_{i<n} log softmax(A[·, y_{i+1}] + e[t_i, ·])[y_i]
        both:     (L_forward + L_backward) / 2  (Bi-MEMM)

    summed over the real tokens (no mean; divide by n for a token mean). Each step is a softmax
    over the K tags, so Σ over all tag sequences of e^{-L} is 1 for "forward" and for "backward".
    Source: kexue.fm/archives/7213.

    Parameters
    ----------
    emissions, tags, transitions, mask : as in ``crf_nll`` (no start / end scores)
    direction : {"forward", "backward", "both"}

    Returns
    -------
    numpy.ndarray of float64, [B]. ``+inf`` where a gold tag is impossible at its step (a ``-inf``
    emission or transition from the previous gold tag); 0 for a row without tokens; NaN where a used
    score (an emission at a real token, a transition out of / into a gold tag) is NaN or +inf.

    Examples
    --------
    Zero scores: each of two steps is a uniform softmax over 2 tags, L = 2 log 2 in every direction.

    >>> import numpy as np
    >>> float(np.round(memm_nll(np.zeros((1, 2, 2)), [[0, 1]], np.zeros((2, 2)))[0], 4))
    1.3863

    With A = [[0, log 3], [0, 0]] and zero emissions, forward: step 2 from tag 0 has probabilities
    (1/4, 3/4), so L(0, 1) = log 2 + log(4/3) = log(8/3); backward: step 1 into tag 1 has
    probabilities (3/4, 1/4), so L(0, 1) = log 2 + log(4/3) too, and L(1, 1) = log 2 + log 4.

    >>> A = np.array([[0.0, np.log(3.0)], [0.0, 0.0]])
    >>> [round(float(v), 4) for v in memm_nll(np.zeros((2, 2, 2)), [[0, 1], [1, 1]], A, direction="backward")]
    [0.9808, 2.0794]
    """
    if not isinstance(direction, str) or direction not in _MEMM_DIRECTIONS:
        raise ValueError(f"direction must be one of {_MEMM_DIRECTIONS}, got {direction!r}")
    em, spans, rows = _rows(emissions, transitions, mask, None, None)
    golds = _gold_tags(tags, em, spans)
    out = []
    for row, gold in zip(rows, golds):
        losses = []
        if direction in ("forward", "both"):
            losses.append(_memm_one_way(row.e, row.tr, gold))
        if direction in ("backward", "both"):
            tr_t = [list(col) for col in zip(*row.tr)]
            losses.append(_memm_one_way(row.e[::-1], tr_t, gold[::-1]))
        out.append(losses[0] if len(losses) == 1 else 0.5 * (losses[0] + losses[1]))
    return np.array(out, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# tag-scheme constraints
# ---------------------------------------------------------------------------------------------


def _parse_label(label, scheme, name):
    """("O", None) or (prefix, entity type) for one label of ``scheme``; ValueError naming it."""
    if not isinstance(label, str):
        raise TypeError(f"labels must be strings, got {label!r}")
    if label == "O":
        return "O", None
    prefix, sep, kind = label.partition("-")
    if sep and kind and prefix in _SCHEME_PREFIXES[scheme]:
        return prefix, kind
    allowed = ", ".join(f"'{p}-TYPE'" for p in _SCHEME_PREFIXES[scheme])
    raise ValueError(f"label {label!r} cannot be parsed in the {name} scheme (expected 'O' or {allowed})")


def allowed_transitions(labels, scheme="BIO"):
    """Boolean masks of the transitions, first tags and last tags a tag scheme allows (reference).

    Labels are strings: ``"O"`` or ``PREFIX-TYPE`` (split at the first ``-``: ``"B-ORG-X"`` is of type
    ``"ORG-X"``). Schemes, with [from, to] the transition order of this library:

    * ``"BIO"`` (synonym ``"IOB2"``: the same scheme, every entity begins with ``B-``; IOB1, where
      ``I-`` may begin an entity, is not supported). Prefixes B, I. ``I-X`` may only follow ``B-X`` or
      ``I-X`` and may not be first; every other transition, first and last tag is allowed.
    * ``"IOBES"`` (synonym ``"BIOES"``; AllenNLP's BIOUL with L = E, U = S). Prefixes B, I, E, S.
      After ``B-X`` or ``I-X`` (inside an entity) only ``I-X`` or ``E-X``; after ``O``, ``E-Y``, ``S-Y``
      or at the start only ``O``, ``B-Z`` or ``S-Z`` (any Z); the last tag must be ``O``, ``E-Y`` or
      ``S-Y``.

    Parameters
    ----------
    labels : sequence of str
        The K tag names, in tag-id order; no duplicates.
    scheme : str
        ``"BIO"``, ``"IOB2"``, ``"IOBES"`` or ``"BIOES"`` (case-sensitive).

    Returns
    -------
    (transitions_mask [K, K], start_mask [K], end_mask [K]): numpy bool arrays, True = allowed. Apply
    as ``where(mask, scores, -inf)`` to transitions / start / end.

    Raises
    ------
    ValueError naming an unknown scheme, a label that the scheme cannot parse, or a duplicate label.

    Examples
    --------
    >>> trans, first, last = allowed_transitions(["O", "B-PER", "I-PER"])
    >>> trans.astype(int)
    array([[1, 1, 0],
           [1, 1, 1],
           [1, 1, 1]])
    >>> first, last
    (array([ True,  True, False]), array([ True,  True,  True]))
    >>> allowed_transitions(["O", "B-PER", "I-PER", "E-PER", "S-PER"], "IOBES")[2]
    array([ True, False, False,  True,  True])
    """
    if not isinstance(scheme, str) or scheme not in _SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}: expected one of {tuple(_SCHEMES)}")
    canonical = _SCHEMES[scheme]
    if isinstance(labels, str):
        raise TypeError(f"labels must be a sequence of label strings, got the string {labels!r}")
    labels = list(labels)
    parsed = [_parse_label(label, canonical, scheme) for label in labels]
    seen = set()
    for label in labels:
        if label in seen:
            raise ValueError(f"label {label!r} appears more than once in labels")
        seen.add(label)
    k = len(parsed)
    trans = np.zeros((k, k), dtype=bool)
    first = np.zeros(k, dtype=bool)
    last = np.zeros(k, dtype=bool)
    for j, (pj, kj) in enumerate(parsed):
        if canonical == "BIO":
            first[j] = pj != "I"
            last[j] = True
        else:
            first[j] = pj in ("O", "B", "S")
            last[j] = pj in ("O", "E", "S")
        for i, (pi, ki) in enumerate(parsed):
            if canonical == "BIO":
                ok = pj != "I" or (pi in ("B", "I") and ki == kj)
            elif pi in ("B", "I"):  # inside an entity of type ki: continue or close it
                ok = pj in ("I", "E") and kj == ki
            else:  # outside any entity
                ok = pj in ("O", "B", "S")
            trans[i, j] = ok
    return trans, first, last
