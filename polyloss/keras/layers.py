"""Keras 3 layers of polyloss: one ``keras.layers.Layer`` per line of the wrappers' table whose learned
parameters have shapes (``polyloss._wrappers.LOSSES``: the linear-chain ``CRF``), on every Keras backend
(TensorFlow, JAX, PyTorch). Keras 3 has no CRF layer of its own (keras-team/keras#20363).

    import polyloss.keras as plk
    crf = plk.layers.CRF(num_tags)                     # weights transitions [K, K], start [K], end [K]
    decoded = crf(emissions, tags=tags)                # training: adds the mean nll with add_loss
    decoded = crf(emissions)                           # inference: the Viterbi tags, int32 [B, T]

- **Weights.** The parameters (``transitions`` indexed ``[from, to]``, ``start``, ``end``) are Keras
  weights, zero at first (the model starts as its per-token classifier; see ``docs/structured.md``).
  ``allowed=`` takes boolean masks of them in order (``polyloss.allowed_transitions(labels)``), applied
  as ``where(allowed, weight, -inf)`` on every call: hard constraints in training and decoding.
- **Output.** ``call`` returns the decoder's tags, ``int32 [B, T]`` with ``fill`` (-1) outside the mask,
  for ``predict`` and metrics. The emissions' Keras mask (``Embedding(mask_zero=True)``) or ``mask=`` says
  which positions are tokens; the layer passes the mask on.
- **Loss.** Given ``tags`` (a second input of the model), the layer adds the mean over the batch of
  :func:`polyloss.crf_nll` (per sequence, summed over its tokens) with ``add_loss``: compile with no
  ``loss`` (or with other losses on other outputs) and ``fit`` with the tags among the inputs. Keras's
  ``(y_true, y_pred)`` losses cannot hold weights, hence the layer. An inference model calls the same
  layer without tags (shared weights).
- **Saving.** Registered as ``"polyloss>CRF"``; ``get_config`` holds the sizes and the masks. Import
  ``polyloss.keras`` before ``keras.models.load_model``.
"""

from __future__ import annotations

import inspect

import keras
import numpy as np

from polyloss import _wrappers
from polyloss.keras import PACKAGE

__all__ = ["Layer", "layer_class"] + [line.name for line in _wrappers.LOSSES if line.keras_layer]

class Layer(keras.layers.Layer):
    """The base of the generated layers: ``line`` (a :class:`polyloss._wrappers.LossClass` with shaped
    parameters) says which function, which decoder, and the weights' shapes."""

    line: _wrappers.LossClass
    _function = None
    _decoder = None

    def __init__(self, *sizes, allowed=None, name=None, **kwargs):
        line = self.line
        hyper = line.hyperparameters
        options = {key: kwargs.pop(key) for key in list(kwargs) if key in hyper or key in line.sizes}
        super().__init__(name=name, **kwargs)
        cls = type(self).__name__
        if len(sizes) > len(line.sizes):
            raise TypeError(f"{cls} takes {len(line.sizes)} positional argument(s) ({', '.join(line.sizes)}), "
                            f"got {len(sizes)}")
        given = {**dict(zip(line.sizes, sizes)), **options}
        missing = [n for n in line.sizes if n not in given]
        if missing:
            raise TypeError(f"{cls} needs {', '.join(missing)}")
        for size in line.sizes:
            value = given[size]
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{cls}: {size} must be a positive int, got {value!r}")
        self.sizes = {n: int(given[n]) for n in line.sizes}
        self.hyperparameters = {n: given.get(n, default) for n, default in hyper.items()}
        self.supports_masking = True
        shapes = {name: tuple(self.sizes[s] for s in shape) for name, shape in zip(line.parameters, line.shapes)}
        self.allowed = _allowed(cls, line.parameters, shapes, allowed)
        for name, shape in shapes.items():
            setattr(self, name, self.add_weight(name=name, shape=shape, initializer="zeros"))

    def _held_values(self) -> dict:
        values = {}
        for name in self.line.parameters:
            # a plain tensor of the backend (TensorFlow's convert_to_tensor keeps a variable as is)
            value = keras.ops.copy(getattr(self, name))
            if self.allowed.get(name) is not None:
                value = keras.ops.where(keras.ops.convert_to_tensor(np.asarray(self.allowed[name], bool)), value,
                                        float("-inf"))
            values[name] = value
        return values

    def call(self, inputs, tags=None, mask=None, inputs_mask=None):
        # Keras passes the emissions' mask as ``mask`` when they are the only tensor argument, and as
        # ``inputs_mask`` (``<argument>_mask``) when the tags are given too
        mask = inputs_mask if mask is None else mask
        held = self._held_values()
        keyword = {"mask": mask} if mask is not None else {}
        if tags is not None:
            if keras.backend.standardize_dtype(tags.dtype).startswith("float"):
                tags = keras.ops.cast(tags, "int32")
            loss = self._function(inputs, tags, **held, **keyword, **self.hyperparameters)
            self.add_loss(keras.ops.mean(loss))
        if self._decoder is None:
            return inputs
        decoded = self._decoder(inputs, **held, **keyword)
        return keras.ops.cast(decoded[0] if isinstance(decoded, tuple) else decoded, "int32")

    def compute_output_spec(self, inputs, tags=None, mask=None, inputs_mask=None):
        if self._decoder is None:
            return keras.KerasTensor(inputs.shape, dtype=inputs.dtype)
        return keras.KerasTensor(inputs.shape[:-1], dtype="int32")

    def compute_mask(self, inputs, mask=None):
        return mask

    def get_config(self):
        allowed = None
        if any(v is not None for v in self.allowed.values()):
            allowed = [self.allowed[name] for name in self.line.parameters]
        return {**super().get_config(), **self.sizes, **self.hyperparameters, "allowed": allowed}


def _allowed(cls: str, parameters: tuple, shapes: dict, masks) -> dict:
    """``allowed=`` as ``{parameter: nested list of booleans or None}`` (what the config saves)."""
    if masks is None:
        return {}
    if not isinstance(masks, dict):
        masks = list(masks)
        if len(masks) != len(parameters):
            raise ValueError(f"{cls}: allowed must give one mask per parameter {parameters} (or a dict), "
                             f"got {len(masks)}")
        masks = dict(zip(parameters, masks))
    out = {}
    for name, mask in masks.items():
        if name not in shapes:
            raise ValueError(f"{cls}: allowed names {name!r}, which is not a parameter {parameters}")
        if mask is None:
            continue
        array = np.asarray(keras.ops.convert_to_numpy(mask) if not isinstance(mask, list | tuple) else mask)
        if array.dtype != bool or array.shape != shapes[name]:
            raise ValueError(f"{cls}: allowed mask of {name} must be booleans of shape {shapes[name]}, got "
                             f"{array.dtype} of shape {array.shape}")
        out[name] = array.tolist()
    return out


def layer_class(line: _wrappers.LossClass) -> type:
    """The registered ``keras.layers.Layer`` class of one table line with shaped parameters."""
    if not line.keras_layer:
        raise ValueError(f"{line.function} has no Keras layer: its line declares no parameter shapes")
    function = line.resolve()
    signature = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in line.sizes]
        + [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d) for n, d in line.hyperparameters.items()]
        + [inspect.Parameter("allowed", inspect.Parameter.KEYWORD_ONLY, default=None),
           inspect.Parameter("name", inspect.Parameter.KEYWORD_ONLY, default=None),
           inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)]
    )
    doc = (f"``keras.layers.Layer`` for :func:`polyloss.{line.function}`: weights {', '.join(line.parameters)} "
           f"(zero at first); ``call({line.inputs[0]}, {line.inputs[1]}=None, mask=None)`` adds the mean loss "
           f"with ``add_loss`` when given {line.inputs[1]}"
           + (f" and returns :func:`polyloss.{line.decoder}`'s tags (int32)" if line.decoder else "")
           + " (see the module docstring).\n\n" + (function.__doc__ or "").split("\n")[0])

    def __init__(self, *args, **kwargs):
        Layer.__init__(self, *args, **kwargs)

    __init__.__signature__ = signature
    cls = type(line.name, (Layer,), {
        "line": line, "__doc__": doc, "__module__": __name__, "_function": staticmethod(function),
        "_decoder": staticmethod(line.resolve(line.decoder)) if line.decoder else None, "__init__": __init__,
    })
    return keras.saving.register_keras_serializable(package=PACKAGE, name=line.name)(cls)


for _line in _wrappers.LOSSES:
    if _line.keras_layer:
        globals()[_line.name] = layer_class(_line)
del _line
