"""polyloss.keras on each Keras backend (TensorFlow, JAX, PyTorch), each in its own processes
(``KERAS_BACKEND``): ``model.fit`` with our loss and metric, ``model.save`` and ``load_model`` in a
fresh process, sparse targets, the metrics against ``polyloss.metrics`` (exactly), the errors of
swapped arguments and bad input, and the training demonstration of issue 12: one model, the same
data and initial weights, trained with ``MultilabelCrossEntropy`` in torch, with the Keras class on
every backend and with the function under JAX/optax, gives one loss curve."""

from __future__ import annotations

import concurrent.futures
import json

import numpy as np
import pytest

import polyloss
from polyloss import _wrappers
from polyloss.testing import assert_close

from helpers import get, run_python

KERAS_BACKENDS = ("tensorflow", "jax", "torch")
STEPS, LEARNING_RATE = 5, 0.5
CRF_EPOCHS = 25

TRAIN = r'''
import json, sys
import numpy as np
import keras
import polyloss, polyloss.keras as plk

folder = sys.argv[1]
backend = keras.backend.backend()
d = np.load(folder + "/data.npz")
x, y, ids, indices = d["x"], d["y"], d["ids"], d["indices"]
out = {"backend": backend}


def model(outputs=3):
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(outputs)])
    m.layers[0].set_weights([d["w"], d["b"]])
    return m


def error(f):
    try:
        f()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


# fit with our loss and metric: the training curve (one full batch per epoch: the loss before each step)
m = model()
m.compile(optimizer=keras.optimizers.SGD(STEP), loss=plk.MultilabelCrossentropy(),
          metrics=[plk.metrics.MultilabelF1(threshold=0.0), plk.metrics.Accuracy()])
history = m.fit(x, y, batch_size=len(x), epochs=STEPS, shuffle=False, verbose=0).history
out["curve"] = history["loss"]
# the metrics, compiled (evaluate, batches of 8) and eager, against polyloss on the same predictions
pred = m.predict(x, batch_size=8, verbose=0)
logs = m.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
out["evaluate"] = {k: float(v) for k, v in logs.items()}
out["polyloss"] = {"multilabel_f1": float(polyloss.metrics.precision_recall_f1(pred, y)[2]),
                   "accuracy": float(polyloss.metrics.accuracy(pred, y)),
                   "loss": float(np.mean(polyloss.multilabel_crossentropy(pred, y)))}
eager = {}
for name in ("MultilabelF1", "MultilabelPrecision", "MultilabelRecall", "Accuracy"):
    metric = getattr(plk.metrics, name)(threshold=0.0)
    for lo in range(0, len(x), 7):
        metric.update_state(y[lo:lo + 7], pred[lo:lo + 7])
    eager[name] = float(metric.result())
    metric.reset_state()
    metric.update_state(y, pred)
    eager[name + "/after_reset"] = float(metric.result())
out["eager"] = eager
out["pred"] = pred.tolist()
m.save(folder + f"/{backend}.keras")

# sparse targets: Keras casts y_true to float; the classes cast ids back
m = model()
m.compile(optimizer="sgd", loss=plk.SoftmaxCrossentropy(label_smoothing=0.1))
out["class_ids"] = m.fit(x, ids, batch_size=8, epochs=1, verbose=0).history["loss"]
m = model()
m.compile(optimizer="sgd", loss=plk.SparseMultilabelCrossentropy(pad_index=-1))
out["indices"] = m.fit(x, indices, batch_size=8, epochs=1, verbose=0).history["loss"]

# a polyloss function given to Keras as is: Keras would pass (y_true, y_pred)
m = model()
m.compile(optimizer="sgd", loss=polyloss.multilabel_crossentropy)
out["plain_function"] = error(lambda: m.fit(x, y, batch_size=8, epochs=1, verbose=0))
m = model()
m.compile(optimizer="sgd", loss=plk.MultilabelCrossentropy(), metrics=[polyloss.metrics.accuracy])
out["plain_metric"] = error(lambda: m.fit(x, y, batch_size=8, epochs=1, verbose=0))
# the loss called by hand in torch's order: same shapes (values tell), different shapes (named)
out["swapped_same_shape"] = error(lambda: plk.MultilabelCrossentropy()(pred, y))
out["swapped_shapes"] = error(lambda: plk.SoftmaxCrossentropy()(pred, ids))
bad = y.copy(); bad[0, 0] = 2.0
out["bad_labels"] = error(lambda: plk.MultilabelCrossentropy()(bad, pred))
out["bad_labels_function"] = error(lambda: polyloss.multilabel_crossentropy(pred, bad))

# get_config round-trips every constructor argument of every class
configs = {}
changed = {"SoftmaxCrossentropy": dict(label_smoothing=0.1, ignore_index=-1, reduction="sum"),
           "FocalLoss": dict(gamma=1.0, alpha=0.25, activation="softmax", name="focal"),
           "LogitAdjustedCrossentropy": dict(prior=[0.5, 0.3, 0.2], tau=0.5)}
for line in __import__("polyloss._wrappers").__dict__["_wrappers"].LOSSES:
    if not line.keras:
        continue
    cls = getattr(plk, line.keras_name)
    obj = cls(**changed.get(line.keras_name, {prior: [0.5, 0.5] for prior in line.settings}))
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
    configs[line.keras_name] = [type(again).__name__, obj.get_config() == again.get_config(),
                                sorted(obj.get_config())]
out["configs"] = configs

# the CRF layer: a toy tagger (embeddings + linear + CRF with BIO constraints) trained with the nll the
# layer adds (add_loss), decoding through the same layer in an inference model
tokens, tags = d["crf_tokens"], d["crf_tags"]
tokens_mask = tokens > 0
allowed = polyloss.allowed_transitions(["O", "B-X", "I-X"])
keras.utils.set_random_seed(0)
tokens_in = keras.Input((None,), dtype="int32")
tags_in = keras.Input((None,), dtype="int32")
emissions = keras.layers.Dense(3)(keras.layers.Embedding(7, 8, mask_zero=True)(tokens_in))
crf = plk.layers.CRF(3, allowed=allowed)
train = keras.Model([tokens_in, tags_in], crf(emissions, tags=tags_in))
infer = keras.Model(tokens_in, crf(emissions))
train.compile(optimizer=keras.optimizers.Adam(0.1))


def accuracy():
    decoded = infer.predict(tokens, batch_size=len(tokens), verbose=0)
    return [float((decoded == tags)[tokens_mask].mean()), bool((decoded[~tokens_mask] == -1).all())]


# the added loss is the mean of polyloss.crf_nll with the layer's weights (allowed applied as -inf), here
# with random weights; then the weights go back to zero (their initial value) and the tagger trains
weights = [np.random.default_rng(1).normal(size=v.shape).astype("float32") for v in crf.weights]
crf.set_weights(weights)
w = dict(zip(("transitions", "start", "end"), weights))
a, s = np.where(allowed[0], w["transitions"], -np.inf), np.where(allowed[1], w["start"], -np.inf)
scores = keras.Model(tokens_in, emissions).predict(tokens, batch_size=len(tokens), verbose=0)
out["crf_loss"] = [train.evaluate([tokens, tags], batch_size=len(tokens), verbose=0),
                   float(np.mean(polyloss.crf_nll(scores, tags, a, mask=tokens_mask, start=s, end=w["end"])))]
crf.set_weights([np.zeros_like(v) for v in weights])
out["crf_before"] = accuracy()
out["crf_curve"] = train.fit([tokens, tags], batch_size=len(tokens), epochs=CRF_EPOCHS, shuffle=False,
                             verbose=0).history["loss"]
out["crf_after"] = accuracy()
out["crf_evaluate"] = train.evaluate([tokens, tags], batch_size=len(tokens), verbose=0)
out["crf_pred"] = train.predict([tokens, tags], batch_size=len(tokens), verbose=0).tolist()
again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(crf))
out["crf_config"] = [type(again).__name__, again.get_config() == crf.get_config(), sorted(crf.get_config())]
train.save(folder + f"/{backend}-crf.keras")
print(json.dumps(out))
'''

LOAD = r'''
import json, sys
import numpy as np
import keras
import polyloss.keras  # registers the classes

folder = sys.argv[1]
backend = keras.backend.backend()
d = np.load(folder + "/data.npz")
m = keras.models.load_model(folder + f"/{backend}.keras")
out = {"loss": type(m.loss).__name__, "loss_config": m.loss.get_config(),
       "pred": m.predict(d["x"], batch_size=8, verbose=0).tolist(),
       "evaluate": {k: float(v) for k, v in m.evaluate(d["x"], d["y"], batch_size=8, verbose=0,
                                                        return_dict=True).items()},
       "fit": m.fit(d["x"], d["y"], batch_size=8, epochs=1, verbose=0).history["loss"]}
crf_inputs = [d["crf_tokens"], d["crf_tags"]]
m = keras.models.load_model(folder + f"/{backend}-crf.keras")
crf = m.layers[-1]
out["crf"] = {"layer": type(crf).__name__, "allowed": crf.get_config()["allowed"],
              "pred": m.predict(crf_inputs, batch_size=len(d["crf_tokens"]), verbose=0).tolist(),
              "evaluate": m.evaluate(crf_inputs, batch_size=len(d["crf_tokens"]), verbose=0),
              "fit": m.fit(crf_inputs, batch_size=8, epochs=1, verbose=0).history["loss"]}
print(json.dumps(out))
'''


def _data():
    rng = np.random.default_rng(12)
    x = rng.normal(size=(32, 4)).astype(np.float32)
    y = (rng.random((32, 3)) < 0.4).astype(np.float32)
    indices = np.where(y > 0, np.arange(3), -1).astype(np.int32)
    return {"x": x, "y": y, "ids": rng.integers(0, 3, 32).astype(np.int32), "indices": indices,
            "w": (rng.normal(size=(4, 3)) * 0.5).astype(np.float32), "b": np.zeros(3, np.float32),
            **_crf_data(rng)}


def _crf_data(rng, n=48, t=10):
    """A BIO tagging task (tags O, B-X, I-X) where a tag depends on the previous one: word 1 opens an
    entity (B-X) that runs over the following words 2 (I-X); other words are O; 0 pads (right)."""
    words = rng.integers(1, 7, (n, t))
    tags = np.zeros((n, t), np.int32)
    for row in range(n):
        for i in range(t):
            if words[row, i] == 1:
                tags[row, i] = 1
            elif words[row, i] == 2 and i > 0 and tags[row, i - 1] in (1, 2):
                tags[row, i] = 2
    lengths = rng.integers(3, t + 1, n)
    mask = np.arange(t)[None, :] < lengths[:, None]
    return {"crf_tokens": np.where(mask, words, 0).astype(np.int32), "crf_tags": np.where(mask, tags, 0)}


def _run_backend(backend, folder):
    """The train-and-save process, then the load process (fresh) of one Keras backend."""
    env = {"KERAS_BACKEND": backend}
    script = (TRAIN.replace("CRF_EPOCHS", str(CRF_EPOCHS)).replace("STEPS", str(STEPS))
              .replace("SGD(STEP)", f"SGD({LEARNING_RATE})"))
    trained = json.loads(run_python(str(_write(folder, "train.py", script)), str(folder), env=env,
                                    timeout=400).stdout.strip().splitlines()[-1])
    loaded = json.loads(run_python(str(_write(folder, "load.py", LOAD)), str(folder), env=env,
                                   timeout=400).stdout.strip().splitlines()[-1])
    return trained, loaded


def _write(folder, name, text):
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def keras_runs(tmp_path_factory):
    """Every Keras backend, side by side (each process start costs seconds)."""
    for name in KERAS_BACKENDS:
        get(name)
    pytest.importorskip("keras")
    folder = tmp_path_factory.mktemp("keras")
    np.savez(folder / "data.npz", **_data())
    with concurrent.futures.ThreadPoolExecutor(len(KERAS_BACKENDS)) as pool:
        futures = {}
        for name in KERAS_BACKENDS:
            sub = folder / name
            sub.mkdir()
            np.savez(sub / "data.npz", **_data())
            futures[name] = pool.submit(_run_backend, name, sub)
        return {name: future.result() for name, future in futures.items()}


pytestmark = pytest.mark.slow
BACKEND = pytest.mark.parametrize("backend", KERAS_BACKENDS)


@BACKEND
def test_fit_trains_and_the_metrics_equal_polyloss_exactly(keras_runs, backend):
    trained, _ = keras_runs[backend]
    assert trained["backend"] == backend
    assert trained["curve"][-1] < trained["curve"][0]
    # compiled (evaluate: the JAX backend runs the metric's stateless update inside jax.jit) and eager
    assert trained["evaluate"]["multilabel_f1"] == trained["polyloss"]["multilabel_f1"]
    assert trained["evaluate"]["accuracy"] == trained["polyloss"]["accuracy"]
    assert_close(np.float32(trained["evaluate"]["loss"]), np.float32(trained["polyloss"]["loss"]))
    pred, y = np.asarray(trained["pred"], np.float32), _data()["y"]
    p, r, f1 = (float(v) for v in polyloss.metrics.precision_recall_f1(pred, y))
    expected = {"MultilabelF1": f1, "MultilabelPrecision": p, "MultilabelRecall": r,
                "Accuracy": float(polyloss.metrics.accuracy(pred, y))}
    for name, value in expected.items():
        assert trained["eager"][name] == value == trained["eager"][name + "/after_reset"], name


@BACKEND
def test_save_and_load_in_a_fresh_process(keras_runs, backend):
    trained, loaded = keras_runs[backend]
    assert loaded["loss"] == "MultilabelCrossentropy"
    assert loaded["pred"] == trained["pred"]
    assert loaded["evaluate"] == trained["evaluate"]
    assert np.isfinite(loaded["fit"]).all()


@BACKEND
def test_sparse_targets_cast_back_from_keras_floats(keras_runs, backend):
    trained, _ = keras_runs[backend]
    assert np.isfinite(trained["class_ids"]).all() and np.isfinite(trained["indices"]).all()


@BACKEND
def test_plain_functions_in_compile_and_swapped_calls_raise_clearly(keras_runs, backend):
    """Issue 12: ``compile(loss=polyloss.multilabel_crossentropy)`` trained on swapped arguments without an
    error on TensorFlow and JAX; now every backend refuses it, naming the class to use."""
    trained, _ = keras_runs[backend]
    assert trained["plain_function"].startswith("TypeError: polyloss.multilabel_crossentropy was passed to Keras")
    assert "polyloss.keras.MultilabelCrossentropy()" in trained["plain_function"]
    assert trained["plain_metric"].startswith("TypeError: polyloss.accuracy was passed to Keras")
    assert "the arguments may be swapped" in trained["swapped_same_shape"]
    assert "Keras passes (y_true, y_pred)" in trained["swapped_same_shape"]
    assert "y_true of shape (32, 3) and y_pred of shape (32,)" in trained["swapped_shapes"]
    # bad input: the function's own message, then the Keras context
    function_message = trained["bad_labels_function"]
    assert function_message.startswith("ValueError: soft labels must lie in [0, 1]")
    assert trained["bad_labels"].startswith(function_message)


@BACKEND
def test_every_class_round_trips_its_config(keras_runs, backend):
    trained, _ = keras_runs[backend]
    expected = {line.keras_name for line in _wrappers.LOSSES if line.keras}
    assert set(trained["configs"]) == expected
    for name, (again, same, keys) in trained["configs"].items():
        line = next(line for line in _wrappers.LOSSES if line.keras_name == name)
        assert again == name and same, name
        assert set(keys) == {"name", "reduction", *line.settings, *line.hyperparameters}, name


@BACKEND
def test_crf_layer_toy_tagger_trains_decodes_saves_and_reloads(keras_runs, backend):
    """Issue 15: embeddings + linear + ``polyloss.keras.layers.CRF`` trains with the loss the layer adds
    and decodes (-1 at padding) on each Keras backend; the added loss is ``mean(crf_nll)`` with the
    layer's weights; the model saves and reloads in a fresh process (weights, allowed masks)."""
    trained, loaded = keras_runs[backend]
    curve = trained["crf_curve"]
    assert curve[-1] < 0.2 * curve[0], curve
    (before, _), (after, padded) = trained["crf_before"], trained["crf_after"]
    assert after > 0.97 and after > before and padded, (before, after)
    assert_close(np.float32(trained["crf_loss"][0]), np.float32(trained["crf_loss"][1]), rtol=1e-5)
    assert trained["crf_config"][:2] == ["CRF", True]
    assert trained["crf_config"][2] == sorted(["name", "trainable", "dtype", "num_tags", "allowed"])
    crf = loaded["crf"]
    assert crf["layer"] == "CRF"
    assert crf["allowed"] == [m.tolist() for m in polyloss.allowed_transitions(["O", "B-X", "I-X"])]
    assert crf["pred"] == trained["crf_pred"]
    assert_close(np.float32(crf["evaluate"]), np.float32(trained["crf_evaluate"]))
    assert np.isfinite(crf["fit"]).all()


def _torch_curve(data):
    import torch

    import polyloss.torch as plt

    layer = torch.nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(data["w"].T))
        layer.bias.copy_(torch.from_numpy(data["b"]))
    optimizer, criterion = torch.optim.SGD(layer.parameters(), lr=LEARNING_RATE), plt.MultilabelCrossEntropy()
    x, y, curve = torch.from_numpy(data["x"]), torch.from_numpy(data["y"]), []
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = criterion(layer(x), y)
        loss.backward()
        optimizer.step()
        curve.append(float(loss.detach()))
    return curve


def _jax_curve(data):
    import jax
    import jax.numpy as jnp
    import optax

    params = {"w": jnp.asarray(data["w"]), "b": jnp.asarray(data["b"])}
    x, y = jnp.asarray(data["x"]), jnp.asarray(data["y"])

    def loss_of(params):
        return polyloss.reduce(polyloss.multilabel_crossentropy(x @ params["w"] + params["b"], y))

    optimizer = optax.sgd(LEARNING_RATE)
    state, curve = optimizer.init(params), []

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(loss_of)(params)
        updates, state = optimizer.update(grads, state)
        return optax.apply_updates(params, updates), state, loss

    for _ in range(STEPS):
        params, state, loss = step(params, state)
        curve.append(float(loss))
    return curve


def test_one_model_trains_the_same_in_torch_keras_and_jax(keras_runs):
    data = _data()
    curves = {"torch": _torch_curve(data), "jax/optax": _jax_curve(data)}
    curves.update({f"keras/{name}": run[0]["curve"] for name, run in keras_runs.items()})
    reference = np.asarray(curves["torch"], np.float32)
    assert reference[-1] < reference[0] - 0.1  # it trains
    for name, curve in curves.items():
        assert_close(np.asarray(curve, np.float32), reference, rtol=1e-5, atol=1e-6, err_msg=name)
