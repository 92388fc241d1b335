"""The gradient-based regularisers against what users write by hand in each framework (docs/adversarial.md):

- the widely copied PyTorch FGM class (attack / restore on ``word_embeddings``, one global norm of the
  embedding matrix's gradient, ``param.data`` edited and restored): the same adversarial loss and the same
  final gradients of every parameter as ``adversarial_loss(scope="global")`` on that matrix;
- the gradient penalty by hand: ``torch.autograd.grad(create_graph=True)``, nested ``tf.GradientTape``s,
  ``jax.grad`` of ``jax.grad``, with the frameworks' own cross-entropies: the penalty and its gradient with
  respect to the weights, also against the reference model's analytic double backprop; the same for
  ``circle_loss``, whose self-paced weights are detached (the official code's convention);
- VAT as ported from lyakaap/VAT-pytorch (torch) and takerum/vat_tf (Miyato's code, TensorFlow), from the
  same start direction;
- a Keras 3 model split at its embedding layer, against a hand-written FGM step in TensorFlow; the
  ``train_step`` recipes of the docs (TensorFlow in adversarial.md, JAX's stateless one in keras.md) train.

Convention differences, named: the FGM class skips a zero or NaN norm (so does polyloss) and adds nothing
to it; VAT-pytorch normalises by ``‖d‖ + 1e-8`` and vat_tf by ``sqrt(1e-6 + Σ (d / (1e-12 + max|d|))²)``
(polyloss: the exact norm; the differences are below 1e-8 relative here); both take the batch mean of the
per-example KL (polyloss returns the per-example values).
"""

from __future__ import annotations

import pathlib
import re

import numpy as np
import pytest

import polyloss
from polyloss.reference import _models
from polyloss.testing import assert_close

from helpers import get, keras_modules, run_python, tensorflow_module

B, L, D, C, V = 3, 4, 3, 5, 7


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "embeddings": rng.normal(size=(V, D)),
        "weights": rng.normal(size=(D, C)),
        "bias": rng.normal(0.0, 0.5, C),
        "ids": rng.integers(0, V - 1, (B, L)),  # the last token is never used
        "labels": rng.integers(0, C, B),
        "x": rng.normal(size=(B, L, D)),
    }


# --------------------------------------------------------------------------------------------
# the classic attack / restore FGM class (torch)
# --------------------------------------------------------------------------------------------
def _torch_model(data):
    import torch

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.word_embeddings = torch.nn.Embedding(V, D).double()
            self.classifier = torch.nn.Linear(D, C).double()
            with torch.no_grad():
                self.word_embeddings.weight.copy_(torch.tensor(data["embeddings"]))
                self.classifier.weight.copy_(torch.tensor(data["weights"]).T)
                self.classifier.bias.copy_(torch.tensor(data["bias"]))

        def forward(self, ids):
            return self.classifier(self.word_embeddings(ids).mean(1))

    return Model()


class FGM:
    """The widely copied PyTorch FGM class, verbatim in substance."""

    def __init__(self, model):
        self.model = model
        self.backup = {}

    def attack(self, epsilon=1.0, emb_name="word_embeddings"):
        import torch

        for name, param in self.model.named_parameters():
            if param.requires_grad and emb_name in name:
                self.backup[name] = param.data.clone()
                norm = torch.norm(param.grad)
                if norm != 0 and not torch.isnan(norm):
                    r_at = epsilon * param.grad / norm
                    param.data.add_(r_at)

    def restore(self, emb_name="word_embeddings"):
        for name, param in self.model.named_parameters():
            if param.requires_grad and emb_name in name:
                assert name in self.backup
                param.data = self.backup[name]
        self.backup = {}


@pytest.mark.parametrize("epsilon", [1.0, 0.25])
def test_the_classic_fgm_class_on_the_embedding_matrix(epsilon):
    get("torch")
    import torch
    import torch.nn.functional as F

    data = _data()
    ids, labels = torch.tensor(data["ids"]), torch.tensor(data["labels"])

    # the classic pattern: backward, attack (edit .data), backward again, restore
    classic = _torch_model(data)
    loss = F.cross_entropy(classic(ids), labels)
    loss.backward()
    fgm = FGM(classic)
    fgm.attack(epsilon=epsilon)
    classic_adversarial = F.cross_entropy(classic(ids), labels)
    classic_adversarial.backward()
    fgm.restore()
    classic_grads = {name: p.grad.clone() for name, p in classic.named_parameters()}

    # polyloss: the matrix is x, the model reads it through functional_call; nothing edited or restored
    model = _torch_model(data)
    matrix = model.word_embeddings.weight

    def loss_fn(e):
        logits = torch.func.functional_call(model, {"word_embeddings.weight": e}, (ids,))
        return polyloss.softmax_crossentropy(logits, labels).mean()

    loss, adversarial = polyloss.adversarial_loss(loss_fn, matrix, epsilon=epsilon, scope="global")
    assert all(p.grad is None for p in model.parameters())  # autograd.grad, never .backward()
    (loss + adversarial).backward()

    assert_close(adversarial.detach(), classic_adversarial.detach(), rtol=1e-13)
    for name, p in model.named_parameters():
        assert_close(p.grad, classic_grads[name], rtol=1e-12, atol=1e-15, err_msg=name)
    assert_close(matrix.detach(), torch.tensor(data["embeddings"]), rtol=0.0)  # never edited


def test_perturbing_the_embedding_output_differs_from_perturbing_the_matrix_only_by_the_norm():
    """The recommended form (x = the embedding output) with one global norm: δ is the matrix form's δ
    gathered at the ids, except that a token used twice gets the sum of its gradients in the matrix form."""
    get("torch")
    import torch

    data = _data()
    ids, labels = torch.tensor(data["ids"]), torch.tensor(data["labels"])
    model = _torch_model(data)

    def head(x):
        return polyloss.softmax_crossentropy(model.classifier(x.mean(1)), labels).mean()

    x = model.word_embeddings(ids)
    loss, adversarial = polyloss.adversarial_loss(head, x, epsilon=0.5)
    grads = _models.classifier_gradients(data["embeddings"][data["ids"]], data["weights"], data["bias"],
                                         data["labels"])
    g = grads["x"]
    shifted = data["embeddings"][data["ids"]] + 0.5 * g / np.linalg.norm(g)
    want = _models.classifier_loss(shifted, data["weights"], data["bias"], data["labels"])[0]
    assert_close(adversarial.detach(), want, rtol=1e-13)


# --------------------------------------------------------------------------------------------
# the gradient penalty by hand, with each framework's own cross-entropy
# --------------------------------------------------------------------------------------------
def _penalty_reference(data):
    """P and ∂P/∂W, ∂P/∂c of the mean loss (the reference model's analytic double backprop)."""
    out = _models.classifier_penalty(data["x"], data["weights"], data["bias"], data["labels"])
    return float(out["penalty"]), out["weights"], out["bias"]


def test_penalty_equals_torch_create_graph():
    get("torch")
    import torch
    import torch.nn.functional as F

    data = _data()
    w = torch.tensor(data["weights"], requires_grad=True)
    c = torch.tensor(data["bias"], requires_grad=True)
    labels = torch.tensor(data["labels"])

    def loss_fn(z):
        return F.cross_entropy(z.mean(1) @ w + c, labels)

    x = torch.tensor(data["x"], requires_grad=True)
    (g,) = torch.autograd.grad(loss_fn(x), x, create_graph=True)
    by_hand = 0.5 * (g * g).sum()
    hand_grads = torch.autograd.grad(by_hand, (w, c))
    _, penalty = polyloss.gradient_penalty(loss_fn, torch.tensor(data["x"]))
    grads = torch.autograd.grad(penalty, (w, c))
    assert_close(penalty.detach(), by_hand.detach(), rtol=1e-13)
    for a, b in zip(grads, hand_grads):
        assert_close(a, b, rtol=1e-12)
    p, gw, gc = _penalty_reference(data)
    assert_close(penalty.detach(), p, rtol=1e-12)
    assert_close(grads[0], gw, rtol=1e-11, atol=1e-16)
    assert_close(grads[1], gc, rtol=1e-11, atol=1e-16)


def test_penalty_equals_tensorflow_nested_tapes():
    tf = tensorflow_module()
    data = _data()
    w, c = tf.Variable(data["weights"]), tf.Variable(data["bias"])
    labels = tf.constant(data["labels"])

    def loss_fn(z):
        logits = tf.reduce_mean(z, axis=1) @ w + c
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))

    x = tf.constant(data["x"])
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            inner.watch(x)
            loss = loss_fn(x)
        g = inner.gradient(loss, x)
        by_hand = 0.5 * tf.reduce_sum(g * g)
    hand_grads = outer.gradient(by_hand, [w, c])
    with tf.GradientTape() as tape:
        _, penalty = polyloss.gradient_penalty(loss_fn, x)
    grads = tape.gradient(penalty, [w, c])
    assert_close(penalty, by_hand, rtol=1e-13)
    for a, b in zip(grads, hand_grads):
        assert_close(a, b, rtol=1e-12)
    p, gw, gc = _penalty_reference(data)
    assert_close(grads[0], gw, rtol=1e-11, atol=1e-16)
    assert_close(grads[1], gc, rtol=1e-11, atol=1e-16)


def test_penalty_equals_jax_grad_of_grad():
    get("jax")
    import jax
    import jax.numpy as jnp

    data = _data()
    x, labels = jnp.asarray(data["x"]), jnp.asarray(data["labels"])

    def loss_fn(params, z):
        logits = jnp.mean(z, axis=1) @ params["w"] + params["c"]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))

    def by_hand(params):
        g = jax.grad(loss_fn, argnums=1)(params, x)
        return 0.5 * jnp.sum(g * g)

    def ours(params):
        return polyloss.gradient_penalty(lambda z: loss_fn(params, z), x)[1]

    params = {"w": jnp.asarray(data["weights"]), "c": jnp.asarray(data["bias"])}
    for penalty_fn in (ours, jax.jit(ours)):
        value, grads = jax.value_and_grad(penalty_fn)(params)
        hand_value, hand_grads = jax.value_and_grad(by_hand)(params)
        assert_close(value, hand_value, rtol=1e-13)
        for k in ("w", "c"):
            assert_close(grads[k], hand_grads[k], rtol=1e-12)
    p, gw, gc = _penalty_reference(data)
    assert_close(grads["w"], gw, rtol=1e-11, atol=1e-16)


def test_circle_loss_under_the_penalty_matches_double_backprop_with_detached_weights():
    """Circle loss's α are detached (Sun et al.'s code): the penalty's weight gradient is the double
    backprop of the loss written that way, not a finite difference of the penalty."""
    get("torch")
    import torch

    rng = np.random.default_rng(1)
    x = torch.tensor(rng.normal(size=(4, 5)))
    w = torch.tensor(rng.normal(size=(5, 6)), requires_grad=True)
    positive = torch.tensor(rng.random((4, 6)) < 0.4)
    positive[:, 0] = True
    gamma, m = 8.0, 0.25

    def by_hand_loss(z):
        s = torch.tanh(0.3 * (z @ w))
        alpha_p = torch.clamp_min(1 + m - s.detach(), 0.0)
        alpha_n = torch.clamp_min(s.detach() + m, 0.0)
        logit_p = torch.where(positive, -gamma * alpha_p * (s - (1 - m)), -torch.inf)
        logit_n = torch.where(~positive, gamma * alpha_n * (s - m), -torch.inf)
        pairs = torch.logsumexp(logit_n, 1) + torch.logsumexp(logit_p, 1)
        return torch.logaddexp(torch.zeros_like(pairs), pairs).mean()  # F.softplus returns x itself above 20

    def our_loss(z):
        return polyloss.circle_loss(torch.tanh(0.3 * (z @ w)), positive.to(torch.int64), gamma=gamma,
                                    margin=m).mean()

    z = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(by_hand_loss(z), z, create_graph=True)
    by_hand = 0.5 * (g * g).sum()
    _, penalty = polyloss.gradient_penalty(our_loss, x)
    assert_close(penalty.detach(), by_hand.detach(), rtol=1e-12)
    assert_close(torch.autograd.grad(penalty, w)[0], torch.autograd.grad(by_hand, w)[0], rtol=1e-11)


# --------------------------------------------------------------------------------------------
# VAT ports
# --------------------------------------------------------------------------------------------
def _linear_logits_np(data, z):
    return z.mean(1) @ data["weights"] + data["bias"]


def test_vat_matches_the_vat_pytorch_port():
    """lyakaap/VAT-pytorch's VATLoss.forward (xi=10, eps=1, ip=1), with the model's .grad zeroed by it."""
    get("torch")
    import torch
    import torch.nn.functional as F

    data = _data()
    w, c = torch.tensor(data["weights"]), torch.tensor(data["bias"])

    def model(z):
        return z.mean(1) @ w + c

    def l2_normalize(d):
        d_reshaped = d.view(d.shape[0], -1, *(1 for _ in range(d.dim() - 2)))
        d /= torch.norm(d_reshaped, dim=1, keepdim=True) + 1e-8
        return d

    x = torch.tensor(data["x"])
    noise = torch.tensor(np.random.default_rng(5).normal(size=x.shape))
    with torch.no_grad():
        pred = F.softmax(model(x), dim=1)
    d = l2_normalize(noise.clone() - 0.5 + 0.5)  # the port draws rand - 0.5; the start is given here
    for _ in range(1):
        d.requires_grad_()
        pred_hat = model(x + 10.0 * d)
        logp_hat = F.log_softmax(pred_hat, dim=1)
        adv_distance = F.kl_div(logp_hat, pred, reduction="batchmean")
        adv_distance.backward()
        d = l2_normalize(d.grad)
    pred_hat = model(x + d * 1.0)
    lds = F.kl_div(F.log_softmax(pred_hat, dim=1), pred, reduction="batchmean")

    ours = polyloss.vat_loss(model, x, noise=noise, xi=10.0, epsilon=1.0, iterations=1)
    assert_close(ours.mean(), lds, rtol=1e-7)


def test_vat_matches_miyatos_vat_tf():
    """takerum/vat_tf's virtual_adversarial_loss (xi=1e-6, epsilon=8, one power iteration), with
    get_normalized_vector and kl_divergence_with_logit ported verbatim in substance."""
    tf = tensorflow_module()
    data = _data()
    w, c = tf.constant(data["weights"]), tf.constant(data["bias"])

    def forward(z):
        return tf.reduce_mean(z, axis=1) @ w + c

    def get_normalized_vector(d):
        axes = list(range(1, len(d.shape)))
        d /= 1e-12 + tf.reduce_max(tf.abs(d), axes, keepdims=True)
        d /= tf.sqrt(1e-6 + tf.reduce_sum(tf.pow(d, 2.0), axes, keepdims=True))
        return d

    def kl_divergence_with_logit(q_logit, p_logit):
        q = tf.nn.softmax(q_logit)
        qlogq = tf.reduce_mean(tf.reduce_sum(q * tf.nn.log_softmax(q_logit), 1))
        qlogp = tf.reduce_mean(tf.reduce_sum(q * tf.nn.log_softmax(p_logit), 1))
        return qlogq - qlogp

    x = tf.constant(data["x"])
    noise = tf.constant(np.random.default_rng(6).normal(size=data["x"].shape))
    logit = tf.stop_gradient(forward(x))
    d = noise
    for _ in range(1):
        d = 1e-6 * get_normalized_vector(d)
        with tf.GradientTape() as tape:
            tape.watch(d)
            dist = kl_divergence_with_logit(logit, forward(x + d))
        d = tf.stop_gradient(tape.gradient(dist, d))
    r_vadv = 8.0 * get_normalized_vector(d)
    expected = kl_divergence_with_logit(logit, forward(x + r_vadv))

    ours = polyloss.vat_loss(forward, x, noise=noise, xi=1e-6, epsilon=8.0, iterations=1)
    assert_close(tf.reduce_mean(ours), expected, rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Keras 3: a model split at its embedding layer
# --------------------------------------------------------------------------------------------
def test_keras_model_split_at_the_embedding_layer_matches_a_hand_written_fgm_step():
    tf = tensorflow_module()
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip(f"keras runs on {keras.backend.backend()}, this test needs its TensorFlow backend")
    data = _data()
    embedding = keras.layers.Embedding(V, D, dtype="float64")
    head = keras.Sequential([keras.layers.GlobalAveragePooling1D(dtype="float64"),
                             keras.layers.Dense(C, dtype="float64")])
    ids, labels = tf.constant(data["ids"]), tf.constant(data["labels"])
    head(embedding(ids))  # builds the layers
    embedding.set_weights([data["embeddings"]])
    head.layers[-1].set_weights([data["weights"], data["bias"]])
    variables = embedding.trainable_variables + head.trainable_variables

    def loss_fn(x):
        return tf.reduce_mean(polyloss.softmax_crossentropy(head(x), labels))

    with tf.GradientTape() as tape:
        loss, adversarial = polyloss.adversarial_loss(loss_fn, embedding(ids), epsilon=0.5)
        total = loss + adversarial
    grads = tape.gradient(total, variables)

    # by hand: the gradient at the embedding output, δ = ε g / ‖g‖ held constant
    with tf.GradientTape() as outer:
        x = embedding(ids)
        with tf.GradientTape() as inner:
            inner.watch(x)
            clean = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, head(x)))
        g = tf.stop_gradient(inner.gradient(clean, x))
        delta = 0.5 * g / tf.norm(g)
        adv = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, head(x + delta)))
        by_hand = clean + adv
    hand_grads = outer.gradient(by_hand, variables)
    assert_close(total, by_hand, rtol=1e-13)
    for a, b in zip(grads, hand_grads):
        assert_close(tf.convert_to_tensor(a), tf.convert_to_tensor(b), rtol=1e-12, atol=1e-16)


DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"


def _docs_block(page: str, marker: str) -> str:
    """The python block of ``docs/<page>`` that contains ``marker``."""
    (block,) = [b for b in re.findall(r"^```python\n(.*?)^```", (DOCS / page).read_text(), flags=re.S | re.M)
                if marker in b]
    return block


RECIPE = "class AdversarialClassifier(keras.Model)"


def test_keras_train_step_recipe_trains_on_tensorflow(monkeypatch):
    """The docs' ``train_step`` (adversarial.md, TensorFlow backend), run here: ``fit`` lowers the clean
    loss, and the adversarial loss, logged beside it, is above it every epoch (δ ascends the loss)."""
    keras_modules()
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")  # the block sets it: restored afterwards
    namespace = {}
    exec(compile(_docs_block("adversarial.md", RECIPE), "adversarial.md", "exec"), namespace)
    history = namespace["history"]
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert all(a > c for a, c in zip(history["adversarial_loss"], history["loss"]))
    model = namespace["model"]
    assert len(model.trainable_variables) == 5  # the embedding matrix, two dense layers' kernels and biases


@pytest.mark.slow
def test_keras_train_step_recipe_trains_on_jax():
    """The stateless ``train_step`` of keras.md on Keras's JAX backend (a fresh process: one Keras backend
    per process), which asserts that the loss falls and the adversarial loss stays above it."""
    get("jax")
    pytest.importorskip("keras")
    out = run_python(code=_docs_block("keras.md", RECIPE) + "\nprint('jax', keras.backend.backend())",
                     env={"KERAS_BACKEND": "jax"})
    assert "jax jax" in out.stdout
