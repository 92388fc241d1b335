"""The reference model of the gradient-based regularisers' conformance cases, with analytic gradients.

An embedding lookup, mean pooling, a linear layer and softmax cross-entropy, in float64 with Python
loops and exactly rounded dot products (``math.fsum``), so that the gradient-based regularisers of
``polyloss.reference.adversarial`` can be checked against exact gradients instead of finite differences:

    x_{b,l}  = E[ids_{b,l}]                                  embedded inputs  [B, L, D]
    h_b      = (1/n_b) Σ_l m_{b,l} x_{b,l},  n_b = Σ_l m_{b,l}  mean pooling over the valid positions
    z_b      = h_b W + c                                     logits [B, C]  (W [D, C], c [C])
    ℓ_b      = lse(z_b) - z_{b,y_b}                          softmax cross-entropy
    L        = (1/B) Σ_b ℓ_b                                 the batch mean

m is the sequence mask (all ones by default); a row with no valid position pools to h_b = 0. ``x`` of
shape [B, D] (no sequence axis) is the plain linear softmax model z_b = x_b W + c.

Gradients, with p_b = softmax(z_b), e_b = p_b - onehot(y_b), u_b = W e_b ∈ R^D and the loss scale
s = B for the mean loss (s = 1 for the sum of the per-example losses):

    ∂L/∂x_{b,l} = m_{b,l}/(s n_b) · u_b        ∂L/∂W = (1/s) Σ_b h_b e_bᵀ        ∂L/∂c = (1/s) Σ_b e_b
    ∂L/∂E_v     = Σ_{(b,l): ids_{b,l} = v} ∂L/∂x_{b,l}          (the embedding matrix: scatter-add)

Gradient penalty (double backprop). With k_{b,l} = m_{b,l}/(s n_b) the input gradient is
g_{b,l} = k_{b,l} u_b, so with where-weights ω_{b,l,d} ∈ {0, 1} and κ_{b,d} = Σ_l ω_{b,l,d} k_{b,l}²:

    P_b = ½ Σ_{l,d} ω g² = ½ Σ_d κ_{b,d} u_{b,d}²
    v_b = κ_b ⊙ u_b,   σ_b = (diag p_b - p_b p_bᵀ) Wᵀ v_b
    ∂P_b/∂W = v_b e_bᵀ + h_b σ_bᵀ,   ∂P_b/∂c = σ_b,   ∂P_b/∂x_{b,l} = (m_{b,l}/n_b) W σ_b

(κ does not depend on the parameters or on x; the second term of ∂P/∂W and the others come from the
softmax Jacobian diag p - p pᵀ, which is symmetric). The global penalty of the mean loss is Σ_b P_b with
s = B (hence its 1/B² scale); the per-example penalties use s = 1. The normalised penalty N = √(2P) has
∂N = ∂P / N (0 where N = 0).

VAT on this model. The logits are linear in x: z_b = A_b vec(x_b) + c with A_b[c, (l, d)] =
(m_{b,l}/n_b) W_{d,c}. The Hessian of r ↦ D(z_b, z_b + A_b r) at r = 0 is A_bᵀ F_b A_b, with
F_b = diag p_b - p_b p_bᵀ for the KL divergence (its Fisher information) and F_b = diag(2 σ(z_b)(1 - σ(z_b)))
for the multi-label divergence Σ_i (σ(s_i) - σ(t_i))(s_i - t_i). Its dominant eigenvector is the direction
the power iteration of VAT converges to as ξ → 0.

Private to the reference: the conformance cases import it as ``polyloss.reference._models``.
"""

import math

import numpy as np

from polyloss.reference import _common
from polyloss.reference import classification as _classification

__all__ = [
    "embed",
    "pooled_logits",
    "classifier_loss",
    "classifier_gradients",
    "classifier_penalty",
    "embedding_classifier_loss",
    "embedding_classifier_gradients",
    "divergence_gradient",
    "vat_hessian",
    "dominant_eigenvector",
]


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------


class _Model:
    """Checked inputs: x [B, L, D] (a [B, D] x is L = 1 with m = 1), W [D, C], c [C], mask [B, L]."""

    def __init__(self, x, weights, bias, mask=None):
        x = _common.real_array(x, "x")
        if x.ndim not in (2, 3):
            raise ValueError(f"x must have shape [B, L, D] or [B, D], got {x.shape}")
        self.flat = x.ndim == 2
        self.shape = x.shape
        self.x = x[:, None, :] if self.flat else x
        w = _common.real_array(weights, "weights")
        c = _common.real_array(bias, "bias")
        batch, length, dim = self.x.shape
        if w.ndim != 2 or w.shape[0] != dim:
            raise ValueError(f"weights must have shape [D, C] with D = {dim} (the last axis of x), got {w.shape}")
        if c.shape != (w.shape[1],):
            raise ValueError(f"bias must have shape ({w.shape[1]},) (the classes of weights), got {c.shape}")
        if mask is None:
            m = np.ones((batch, length), dtype=bool)
        else:
            if self.flat:
                raise ValueError("mask needs x of shape [B, L, D]")
            m = np.asarray(mask)
            if m.dtype.kind not in "biu" or m.shape != (batch, length):
                raise ValueError(f"mask must be bool or 0/1 of shape {(batch, length)}, got {m.dtype} {m.shape}")
            if not np.all((m == 0) | (m == 1)):
                raise ValueError("mask must hold booleans or 0/1")
            m = m.astype(bool)
        self.w, self.c, self.m = w, c, m
        self.batch, self.length, self.dim, self.classes = batch, length, dim, w.shape[1]
        self.n = [int(np.sum(m[b])) for b in range(batch)]

    def pooled(self, b):
        """h_b = (1/n_b) Σ_l m_{b,l} x_{b,l}; 0 for n_b = 0."""
        if self.n[b] == 0:
            return [0.0] * self.dim
        return [math.fsum(float(self.x[b, pos, d]) for pos in range(self.length) if self.m[b, pos]) / self.n[b]
                for d in range(self.dim)]

    def logits(self, h):
        """z = h W + c (exactly rounded dot products)."""
        return [math.fsum([float(self.c[k])] + [h[d] * float(self.w[d, k]) for d in range(self.dim)])
                for k in range(self.classes)]

    def w_times(self, vector):
        """W v for v ∈ R^C."""
        return [math.fsum(float(self.w[d, k]) * vector[k] for k in range(self.classes)) for d in range(self.dim)]

    def wt_times(self, vector):
        """Wᵀ v for v ∈ R^D."""
        return [math.fsum(float(self.w[d, k]) * vector[d] for d in range(self.dim)) for k in range(self.classes)]

    def unflatten(self, grad_x):
        """[B, L, D] -> the shape of the caller's x."""
        return grad_x[:, 0, :] if self.flat else grad_x


def _softmax(z):
    """p = softmax(z), max-shifted, normalised by an exactly rounded sum."""
    top = max(z)
    e = [math.exp(v - top) for v in z]
    total = math.fsum(e)
    return [v / total for v in e]


def _labels(labels, batch, classes):
    y = np.asarray(labels)
    if y.dtype.kind not in "iu":
        raise TypeError(f"labels must be integer class ids, got dtype {y.dtype}")
    if y.shape != (batch,):
        raise ValueError(f"labels must have shape ({batch},), got {y.shape}")
    out = [int(v) for v in y]
    for v in out:
        if not 0 <= v < classes:
            raise ValueError(f"class id {v} in labels is outside [0, {classes})")
    return out


def _scale(reduction, batch):
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    return float(batch) if reduction == "mean" else 1.0


# ---------------------------------------------------------------------------------------------
# forward
# ---------------------------------------------------------------------------------------------


def embed(embeddings, ids):
    """x = E[ids]: the embedding lookup, [V, D] and [B, L] -> [B, L, D] (float64).

    Examples
    --------
    >>> embed(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[1, 0, 1]]))[0]
    array([[3., 4.],
           [1., 2.],
           [3., 4.]])
    """
    e = _common.real_array(embeddings, "embeddings")
    ids = _common.int_array(ids, "ids")
    if e.ndim != 2:
        raise ValueError(f"embeddings must have shape [V, D], got {e.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= e.shape[0]):
        raise ValueError(f"ids must lie in [0, {e.shape[0]}) (the rows of embeddings)")
    return e[ids]


def pooled_logits(x, weights, bias, *, mask=None):
    """z_b = h_b W + c with h_b the masked mean of x_b over its valid positions (x [B, L, D]) or
    h_b = x_b (x [B, D]). Returns [B, C] float64.

    Examples
    --------
    >>> x = np.array([[[1.0, 0.0], [3.0, 2.0], [9.0, 9.0]]])          # pooled over 2 positions: (2, 1)
    >>> pooled_logits(x, np.eye(2), np.array([0.5, 0.0]), mask=np.array([[1, 1, 0]]))
    array([[2.5, 1. ]])
    """
    model = _Model(x, weights, bias, mask)
    return np.array([model.logits(model.pooled(b)) for b in range(model.batch)], dtype=np.float64)


def classifier_loss(x, weights, bias, labels, *, mask=None):
    """(L, ℓ): the mean softmax cross-entropy (0-d) and the per-example losses [B] of the pooled
    linear classifier, as functions of the embedded inputs x (``softmax_crossentropy`` of
    ``pooled_logits``).

    Examples
    --------
    >>> loss, per_example = classifier_loss(np.zeros((2, 1, 3)), np.zeros((3, 4)), np.zeros(4), np.array([0, 3]))
    >>> bool(np.allclose(per_example, np.log(4.0))) and bool(np.isclose(loss, np.log(4.0)))
    True
    """
    z = pooled_logits(x, weights, bias, mask=mask)
    _labels(labels, z.shape[0], z.shape[1])
    per_example = _classification.softmax_crossentropy(z, np.asarray(labels))
    mean = _common.fsum([float(v) for v in per_example]) / per_example.shape[0]
    return np.asarray(mean, dtype=np.float64), per_example


def embedding_classifier_loss(embeddings, weights, bias, ids, labels, *, mask=None):
    """(L, ℓ) of the model from token ids: ``classifier_loss(embed(embeddings, ids), ...)``."""
    return classifier_loss(embed(embeddings, ids), weights, bias, labels, mask=mask)


# ---------------------------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------------------------


def _errors(model, labels):
    """Per example: h_b, p_b, e_b = p_b - onehot(y_b), u_b = W e_b."""
    ys = _labels(labels, model.batch, model.classes)
    out = []
    for b in range(model.batch):
        h = model.pooled(b)
        p = _softmax(model.logits(h))
        e = [p[k] - (1.0 if k == ys[b] else 0.0) for k in range(model.classes)]
        out.append((h, p, e, model.w_times(e)))
    return out


def classifier_gradients(x, weights, bias, labels, *, mask=None, reduction="mean"):
    """Analytic gradients of the mean (or, reduction="sum", the summed) cross-entropy with respect to
    x, W and c: a dict with keys "x" (shaped like x), "weights" [D, C], "bias" [C].

        ∂L/∂x_{b,l} = m_{b,l}/(s n_b)·W (p_b - y_b)
        ∂L/∂W = (1/s) Σ_b h_b (p_b - y_b)ᵀ,    ∂L/∂c = (1/s) Σ_b (p_b - y_b)

    with s = B (mean) or 1 (sum).

    Examples
    --------
    >>> g = classifier_gradients(np.zeros((1, 2)), np.zeros((2, 2)), np.zeros(2), np.array([0]))
    >>> g["bias"]                                          # p - y = (½, ½) - (1, 0)
    array([-0.5,  0.5])
    """
    model = _Model(x, weights, bias, mask)
    s = _scale(reduction, model.batch)
    rows = _errors(model, labels)
    gx = np.zeros(model.x.shape, dtype=np.float64)
    for b, (_, _, _, u) in enumerate(rows):
        for pos in range(model.length):
            if model.m[b, pos]:
                gx[b, pos] = [v / (s * model.n[b]) for v in u]
    gw = np.array([[math.fsum(rows[b][0][d] * rows[b][2][k] for b in range(model.batch)) / s
                    for k in range(model.classes)] for d in range(model.dim)], dtype=np.float64)
    gc = np.array([math.fsum(rows[b][2][k] for b in range(model.batch)) / s for k in range(model.classes)],
                  dtype=np.float64)
    return {"x": model.unflatten(gx), "weights": gw, "bias": gc}


def embedding_classifier_gradients(embeddings, weights, bias, ids, labels, *, mask=None, reduction="mean"):
    """``classifier_gradients`` at x = E[ids], plus "embeddings": the gradient with respect to the
    embedding matrix [V, D], the scatter-add of ∂L/∂x over the ids (rows of unused tokens are 0; a token
    used twice gets the sum of its two gradients: the gradient the attack/restore FGM class normalises)."""
    e = _common.real_array(embeddings, "embeddings")
    ids_arr = _common.int_array(ids, "ids")
    grads = classifier_gradients(embed(e, ids_arr), weights, bias, labels, mask=mask, reduction=reduction)
    ge = np.zeros(e.shape, dtype=np.float64)
    gx = grads["x"]
    for v in range(e.shape[0]):
        positions = [idx for idx in np.ndindex(*ids_arr.shape) if ids_arr[idx] == v]
        for d in range(e.shape[1]):
            ge[v, d] = _common.fsum([float(gx[idx + (d,)]) for idx in positions])
    grads["embeddings"] = ge
    return grads


def classifier_penalty(x, weights, bias, labels, *, mask=None, where=None, scope="global", normalized=False):
    """The gradient penalty of the model's loss and its analytic gradients (double backprop).

    scope="global": P = ½‖∇_x L‖² of the mean loss L (s = B); scope="example": P_b = ½‖∇_{x_b} ℓ_b‖²
    per example (s = 1), and the gradients are those of Σ_b P_b. ``normalized``: ‖·‖ instead of ½‖·‖²
    (gradients ∂P/‖·‖, 0 where the norm is 0). ``where`` (broadcastable to x) leaves positions out of the
    norms, as in ``polyloss.reference.adversarial.gradient_penalty``, whose value this matches.

    Returns a dict: "penalty" (0-d, or [B] for scope="example"), "x" (shaped like x), "weights" [D, C],
    "bias" [C]. See the module docstring for the formulas.

    Examples
    --------
    >>> # B = 1, D = C = 2, W = I, z = 0: p = (½, ½), y = 0, ∇_x L = W (p - y) = (-½, ½), P = ¼
    >>> out = classifier_penalty(np.zeros((1, 2)), np.eye(2), np.zeros(2), np.array([0]))
    >>> float(out["penalty"])
    0.25
    """
    if scope not in ("global", "example"):
        raise ValueError(f"scope must be 'global' or 'example', got {scope!r}")
    if not isinstance(normalized, (bool, np.bool_)):
        raise TypeError(f"normalized must be a bool, got {normalized!r}")
    model = _Model(x, weights, bias, mask)
    omega = np.asarray(_common.where_array(where, model.shape, against="x"))
    omega = omega[:, None, :] if model.flat else omega
    s = float(model.batch) if scope == "global" else 1.0
    rows = _errors(model, labels)
    parts = []  # per example: (P_b, ∂P_b/∂W, ∂P_b/∂c, ∂P_b/∂h_b)
    for b, (h, p, e, u) in enumerate(rows):
        k2 = [(1.0 / (s * model.n[b])) ** 2 if model.m[b, pos] else 0.0 for pos in range(model.length)]
        kappa = [math.fsum(k2[pos] for pos in range(model.length) if omega[b, pos, d]) for d in range(model.dim)]
        penalty = 0.5 * math.fsum(kappa[d] * u[d] * u[d] for d in range(model.dim))
        v = [kappa[d] * u[d] for d in range(model.dim)]
        wt_v = model.wt_times(v)
        mean = math.fsum(p[j] * wt_v[j] for j in range(model.classes))
        sigma = [p[k] * (wt_v[k] - mean) for k in range(model.classes)]  # (diag p - p pᵀ) Wᵀ v
        gw = [[v[d] * e[k] + h[d] * sigma[k] for k in range(model.classes)] for d in range(model.dim)]
        parts.append((penalty, gw, sigma, model.w_times(sigma)))

    if scope == "global":
        total = math.fsum(part[0] for part in parts)
        norm = math.sqrt(2.0 * total)
        factors = [(1.0 / norm if norm > 0.0 else 0.0) if normalized else 1.0] * model.batch
        penalty = np.asarray(norm if normalized else total, dtype=np.float64)
    else:
        norms = [math.sqrt(2.0 * part[0]) for part in parts]
        factors = [((1.0 / n if n > 0.0 else 0.0) if normalized else 1.0) for n in norms]
        penalty = np.array(norms if normalized else [part[0] for part in parts], dtype=np.float64)

    gw = np.array([[math.fsum(factors[b] * parts[b][1][d][k] for b in range(model.batch))
                    for k in range(model.classes)] for d in range(model.dim)], dtype=np.float64)
    gc = np.array([math.fsum(factors[b] * parts[b][2][k] for b in range(model.batch)) for k in range(model.classes)],
                  dtype=np.float64)
    gx = np.zeros(model.x.shape, dtype=np.float64)
    for b in range(model.batch):
        for pos in range(model.length):
            if model.m[b, pos]:
                gx[b, pos] = [factors[b] * g / model.n[b] for g in parts[b][3]]
    return {"penalty": penalty, "x": model.unflatten(gx), "weights": gw, "bias": gc}


# ---------------------------------------------------------------------------------------------
# VAT
# ---------------------------------------------------------------------------------------------


def _sigmoid(v):
    if v >= 0.0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


def divergence_gradient(z, clean_logits, weights, bias, *, mask=None, divergence="kl"):
    """∇_z Σ_b D(s_b, f(z)_b) for the pooled linear model f, the clean logits s held constant: the
    ``grad_fn`` of ``polyloss.reference.adversarial.vat_loss`` for this model (z = x + ξd).

    With t_b = f(z)_b:  ∂D/∂t = q - p (KL(softmax s ‖ softmax t), q = softmax t, p = softmax s), or
    ∂D/∂t_i = -(σ(s_i) - σ(t_i)) - σ'(t_i)(s_i - t_i) (multilabel); then
    ∂/∂z_{b,l} = (m_{b,l}/n_b) W ∂D/∂t_b.

    Examples
    --------
    >>> g = divergence_gradient(np.array([[1.0, 0.0]]), np.zeros((1, 2)), np.eye(2), np.zeros(2))
    >>> bool(np.allclose(g, [[np.tanh(0.5) / 2, -np.tanh(0.5) / 2]]))   # q - p = (σ(1) - ½)(1, -1)
    True
    """
    if divergence not in ("kl", "multilabel"):
        raise ValueError(f"divergence must be 'kl' or 'multilabel', got {divergence!r}")
    model = _Model(z, weights, bias, mask)
    s = _common.real_array(clean_logits, "clean_logits")
    if s.shape != (model.batch, model.classes):
        raise ValueError(f"clean_logits must have shape {(model.batch, model.classes)}, got {s.shape}")
    grad = np.zeros(model.x.shape, dtype=np.float64)
    for b in range(model.batch):
        t = model.logits(model.pooled(b))
        sb = [float(v) for v in s[b]]
        if divergence == "kl":
            p, q = _softmax(sb), _softmax(t)
            dt = [q[k] - p[k] for k in range(model.classes)]
        else:
            dt = []
            for si, ti in zip(sb, t):
                st = _sigmoid(ti)
                dt.append(-(_sigmoid(si) - st) - st * (1.0 - st) * (si - ti))
        wd = model.w_times(dt)
        for pos in range(model.length):
            if model.m[b, pos]:
                grad[b, pos] = [v / model.n[b] for v in wd]
    return model.unflatten(grad)


def vat_hessian(x, weights, bias, *, mask=None, divergence="kl"):
    """The Hessian of r ↦ D(f(x)_b, f(x + r)_b) at r = 0, per example: [B, n, n], n = x[b].size.

        H_b = A_bᵀ F_b A_b,   A_b[c, (l, d)] = (m_{b,l}/n_b) W_{d,c}  (the logits are linear in x)

    F_b = diag p - p pᵀ (p = softmax f(x)_b) for divergence="kl" and diag(2 σ(z)(1 - σ(z))) for
    "multilabel". Rows and columns follow the C-order flattening of x[b].

    Examples
    --------
    >>> vat_hessian(np.zeros((1, 2)), np.eye(2), np.zeros(2))[0]      # diag p - p pᵀ at p = (½, ½)
    array([[ 0.25, -0.25],
           [-0.25,  0.25]])
    """
    if divergence not in ("kl", "multilabel"):
        raise ValueError(f"divergence must be 'kl' or 'multilabel', got {divergence!r}")
    model = _Model(x, weights, bias, mask)
    size = model.length * model.dim
    out = np.zeros((model.batch, size, size), dtype=np.float64)
    for b in range(model.batch):
        z = model.logits(model.pooled(b))
        if divergence == "kl":
            p = _softmax(z)
            fisher = [[(p[i] if i == j else 0.0) - p[i] * p[j] for j in range(model.classes)]
                      for i in range(model.classes)]
        else:
            fisher = [[2.0 * _sigmoid(z[i]) * (1.0 - _sigmoid(z[i])) if i == j else 0.0
                       for j in range(model.classes)] for i in range(model.classes)]
        a = [[(float(model.w[d, c]) / model.n[b] if model.m[b, pos] else 0.0)
              for pos in range(model.length) for d in range(model.dim)] for c in range(model.classes)]
        fa = [[math.fsum(fisher[i][j] * a[j][col] for j in range(model.classes)) for col in range(size)]
              for i in range(model.classes)]
        for r in range(size):
            for col in range(size):
                out[b, r, col] = math.fsum(a[i][r] * fa[i][col] for i in range(model.classes))
    return out


def dominant_eigenvector(hessian):
    """(λ, v): the largest eigenvalue [B] and a unit eigenvector [B, n] of each symmetric matrix of
    ``hessian`` [B, n, n] (``numpy.linalg.eigh``), the sign fixed so that its largest-magnitude entry is
    positive. A repeated top eigenvalue has no unique eigenvector: check the gap to the second one.

    Examples
    --------
    >>> lam, v = dominant_eigenvector(np.array([[[2.0, 0.0], [0.0, 5.0]]]))
    >>> float(lam[0]), v[0].tolist()
    (5.0, [0.0, 1.0])
    """
    h = _common.real_array(hessian, "hessian")
    if h.ndim != 3 or h.shape[1] != h.shape[2]:
        raise ValueError(f"hessian must have shape [B, n, n], got {h.shape}")
    values, vectors = [], []
    for b in range(h.shape[0]):
        w, v = np.linalg.eigh(h[b])
        top = v[:, -1]
        if top[np.argmax(np.abs(top))] < 0:
            top = -top
        values.append(w[-1])
        vectors.append(top)
    return np.array(values, dtype=np.float64), np.array(vectors, dtype=np.float64).reshape(h.shape[0], h.shape[1])
