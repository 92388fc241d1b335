"""Keras 3 metrics over polyloss's counting state objects (``docs/keras.md``).

    plk.metrics.MultilabelF1(threshold=0.0)     # keras.metrics.F1Score refuses threshold 0

Each class is generated from the metrics' table (``polyloss._wrappers.METRICS``) and the state object's
declared ``fields``: one Keras variable per count (``int32``, created with the shape of the first
batch's counts), updated with ``assign_add``, so the metric works under JAX's stateless API inside
``jax.jit`` as on TensorFlow and PyTorch. ``update_state(y_true, y_pred)`` measures the batch with the
state object (``measure(y_pred, y_true)``: polyloss's order) and ``result()`` computes the metric from
the summed counts with the state object's own ``result``, so the value equals ``polyloss.metrics`` on
all the data exactly. Counts are not weighted: ``sample_weight`` is refused. The metrics that keep
every value (``BestThreshold``, ``Spearman``, ``Pearson``) have no Keras class (a variable of unknown
length cannot live inside a compiled step); compute them after ``predict``.
"""

from __future__ import annotations

import inspect

import keras

from polyloss import _wrappers

__all__ = ["Metric", "metric_class"] + [line.name for line in _wrappers.METRICS if line.keras]


class Metric(keras.metrics.Metric):
    """The base of the generated classes: ``line`` names the state object and the output."""

    line: _wrappers.MetricClass
    _state_class = None

    def __init__(self, name=None, dtype=None, **settings):
        super().__init__(name=name, dtype=dtype)
        self._measurer = self._state_class(**settings)  # checks the settings now
        self.settings = settings
        self._counts = {}

    def update_state(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(f"{type(self).__name__} counts exactly and takes no sample_weight")
        y_pred = keras.ops.convert_to_tensor(y_pred)
        y_true = keras.ops.convert_to_tensor(y_true)
        if len(y_true.shape) < len(y_pred.shape) and "float" in keras.backend.standardize_dtype(y_true.dtype):
            y_true = keras.ops.cast(y_true, "int32")  # class ids, cast to float by Keras
        state, _ = self._measurer.measure(y_pred, y_true)
        if not self._counts:
            for field in self._state_class.fields:
                self._counts[field] = self.add_variable(shape=tuple(state[field].shape), initializer="zeros",
                                                        dtype="int32", name=field)
        for field, variable in self._counts.items():
            variable.assign_add(keras.ops.cast(state[field], "int32"))

    def result(self):
        if not self._counts:
            return keras.ops.zeros((), dtype=self.dtype)
        state = {field: keras.ops.copy(v) for field, v in self._counts.items()}  # tensors, not variables
        from polyloss import get_namespace

        xp, _ = get_namespace(next(iter(state.values())))
        value = self._measurer.result(state, getattr(xp, keras.backend.standardize_dtype(self.dtype)))
        index = self.line.index
        return value if index is None else value[index]

    def reset_state(self):
        for variable in self._counts.values():
            variable.assign(keras.ops.zeros(variable.shape, dtype=variable.dtype))

    def get_config(self):
        return {**super().get_config(), **self.settings}


def metric_class(line: _wrappers.MetricClass) -> type:
    """The registered ``keras.metrics.Metric`` class of one line of the metrics' table."""
    state_class = line.resolve()
    parameters = [p for p in inspect.signature(state_class).parameters.values() if p.kind is p.KEYWORD_ONLY]
    signature = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
         inspect.Parameter("name", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None),
         inspect.Parameter("dtype", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None), *parameters]
    )
    what = "the whole result" if line.output is None else f"its {line.output}"
    doc = (f"``keras.metrics.Metric`` over :class:`polyloss.metrics.{line.state}`: {what}, from exact counts "
           f"summed in Keras variables (see the module docstring). Settings: "
           f"{', '.join(p.name for p in parameters) or 'none'}.")

    def __init__(self, *args, **kwargs):
        Metric.__init__(self, *args, **kwargs)

    __init__.__signature__ = signature
    cls = type(line.name, (Metric,), {"line": line, "_state_class": state_class, "__doc__": doc,
                                      "__module__": __name__, "__init__": __init__})
    from polyloss.keras import PACKAGE

    return keras.saving.register_keras_serializable(package=PACKAGE, name=line.name)(cls)


for _line in _wrappers.METRICS:
    if _line.keras:
        globals()[_line.name] = metric_class(_line)
del _line
