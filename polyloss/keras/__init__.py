"""Keras 3 faces of polyloss: one ``keras.losses.Loss`` per public loss that takes a prediction and a
target (``docs/keras.md``), on every Keras backend (TensorFlow, JAX, PyTorch).

    import polyloss.keras as plk
    model.compile(loss=plk.MultilabelCrossentropy(), metrics=[plk.metrics.MultilabelF1(threshold=0.0)])

- **Order.** Keras calls a loss as ``loss(y_true, y_pred)``; each class passes them on in polyloss's
  order, ``function(y_pred, y_true)``. A plain polyloss function given to ``compile`` would get them
  swapped: it raises a TypeError naming the class to use instead.
- **Sparse targets.** Keras casts ``y_true`` to the loss's float dtype. Class ids, indices and spans
  are cast back to ``int32`` (ids are exact in float32 below 2^24): the targets named ``indices``,
  ``spans`` and ``positive_index`` always, ``labels`` when it has fewer axes than ``y_pred`` (class ids
  of ``[batch]`` beside logits of ``[batch, classes]``).
- **Reduction.** ``call`` returns polyloss's per-example values; Keras reduces them with its own
  ``reduction`` (``"sum_over_batch_size"`` by default, ``"sum"``, ``"mean_with_sample_weight"``,
  ``None``), ``sample_weight`` and the output's Keras mask.
- **Saving.** Every class is registered as ``"polyloss>ClassName"``; ``get_config`` holds every
  constructor argument. Import ``polyloss.keras`` before ``keras.models.load_model``.
- **Bad input** raises the function's own error (the same message a function user sees), with the
  shapes Keras passed and a note on the order. Value checks (labels in range, ...) run eagerly:
  ``run_eagerly=True``, the torch backend, or a loss called directly; inside a compiled train step
  they cannot, as for the functions under ``jax.jit`` / ``tf.function``.

Every class is generated from the table in ``polyloss._wrappers`` (``LOSSES``), as ``polyloss.torch``'s.
Lines with learned, shaped parameters (the linear-chain CRF) are layers, ``polyloss.keras.layers``.
"""

from __future__ import annotations

import inspect

import keras
import numpy as np

from polyloss import _wrappers
from polyloss.backends import preload as _preload

__all__ = ["Loss", "loss_class", "layers", "metrics", "PACKAGE",
           *(line.keras_name for line in _wrappers.LOSSES if line.keras)]

PACKAGE = "polyloss"  # the package name of every registered class: "polyloss>MultilabelCrossentropy"

_preload()


class Loss(keras.losses.Loss):
    """The base of the generated classes: ``line`` (a :class:`polyloss._wrappers.LossClass`) says which
    function, its settings and hyper-parameters."""

    line: _wrappers.LossClass
    _function = None

    def __init__(self, *settings, reduction="sum_over_batch_size", name=None, dtype=None, **options):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        line = self.line
        if len(settings) > len(line.settings):
            raise TypeError(f"{type(self).__name__} takes {len(line.settings)} positional argument(s) "
                            f"({', '.join(line.settings) or 'none'}), got {len(settings)}")
        given = dict(zip(line.settings, settings))
        hyper = line.hyperparameters
        for key, value in options.items():
            if key in given:
                raise TypeError(f"{type(self).__name__} got {key!r} twice")
            if key not in hyper and key not in line.settings:
                allowed = [*line.settings, *hyper, "reduction", "name", "dtype"]
                raise TypeError(f"{type(self).__name__} got an unexpected argument {key!r}; it takes "
                                f"{', '.join(allowed)}")
            given[key] = value
        missing = [n for n in line.settings if n not in given]
        if missing:
            raise TypeError(f"{type(self).__name__} needs {', '.join(missing)}")
        # settings (a prior) as plain lists: what the config saves, converted by the function per call
        self.settings = {n: np.asarray(keras.ops.convert_to_numpy(given[n])).tolist() for n in line.settings}
        self.hyperparameters = {n: given.get(n, default) for n, default in hyper.items()}

    def call(self, y_true, y_pred):
        prediction, target = self.line.inputs
        y_true = _as_target(target, y_true, y_pred)
        try:
            return self._function(y_pred, y_true, **self.settings, **self.hyperparameters)
        except (TypeError, ValueError) as exc:
            raise _in_keras_terms(exc, type(self).__name__, prediction, target, y_true, y_pred) from exc

    def get_config(self):
        return {**super().get_config(), **self.settings, **self.hyperparameters}


def _as_target(target: str, y_true, y_pred):
    """Keras's float ``y_true`` as polyloss's target: ids back to ``int32`` (module docstring)."""
    ids = target in _wrappers.INDEX_TARGETS or (target == "labels" and len(y_true.shape) < len(y_pred.shape))
    if ids and keras.backend.standardize_dtype(y_true.dtype).startswith("float"):
        return keras.ops.cast(y_true, "int32")
    return y_true


def _in_keras_terms(exc, cls: str, prediction: str, target: str, y_true, y_pred):
    """The function's own error, with the shapes Keras passed and the order it passes them in."""
    message = (f"{exc}\n({cls}: Keras passed y_true of shape {tuple(y_true.shape)} and y_pred of shape "
               f"{tuple(y_pred.shape)}; Keras passes (y_true, y_pred) and {cls} passes them on as "
               f"{prediction}=y_pred, {target}=y_true: if you called it yourself, the arguments may be swapped)")
    try:
        return type(exc)(message)
    except Exception:  # an exception type with another constructor
        return ValueError(message)


def loss_class(line: _wrappers.LossClass) -> type:
    """The registered ``keras.losses.Loss`` class of one table line (how every class here is made)."""
    if not line.keras:
        raise ValueError(f"{line.function} has no Keras class: it takes {line.inputs}, not a prediction and a "
                         f"target, or it holds learned parameters, or it wraps the model ({line.wrapped}: see the "
                         f"train_step recipe in docs/adversarial.md)")
    function = line.resolve()
    hyper = line.hyperparameters
    signature = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in line.settings]
        + [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d) for n, d in hyper.items()]
        + [inspect.Parameter("reduction", inspect.Parameter.KEYWORD_ONLY, default="sum_over_batch_size"),
           inspect.Parameter("name", inspect.Parameter.KEYWORD_ONLY, default=None),
           inspect.Parameter("dtype", inspect.Parameter.KEYWORD_ONLY, default=None)]
    )
    prediction, target = line.inputs
    doc = (f"``keras.losses.Loss`` for :func:`polyloss.{line.function}`: Keras's ``(y_true, y_pred)`` passed on "
           f"as ``{prediction}=y_pred, {target}=y_true``; hyper-parameters {', '.join(hyper) or 'none'} "
           "(see the module docstring).\n\n" + (function.__doc__ or "").split("\n")[0])

    def __init__(self, *args, **kwargs):
        Loss.__init__(self, *args, **kwargs)

    __init__.__signature__ = signature
    cls = type(line.keras_name, (Loss,), {"line": line, "__doc__": doc, "__module__": __name__,
                                          "_function": staticmethod(function), "__init__": __init__})
    return keras.saving.register_keras_serializable(package=PACKAGE, name=line.keras_name)(cls)


for _line in _wrappers.LOSSES:
    if _line.keras:
        globals()[_line.keras_name] = loss_class(_line)
del _line

from polyloss.keras import layers, metrics  # noqa: E402  (registers the layer and metric classes too)
