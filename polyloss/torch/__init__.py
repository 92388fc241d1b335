"""PyTorch faces of polyloss: one ``torch.nn.Module`` per public loss (``docs/torch.md``).

    import polyloss.torch as plt
    criterion = plt.MultilabelCrossEntropy()             # reduction="mean" | "sum" | "none"
    loss = criterion(logits, labels)
    f1 = plt.metrics.MultilabelF1(threshold=0.0)         # a torchmetrics.Metric (needs torchmetrics)

Every class is generated from the table in ``polyloss._wrappers`` (``LOSSES``): the constructor takes
the function's keyword hyper-parameters (and its settings, e.g. a prior), ``forward`` takes its
inputs in the function's order (prediction first, as torch's own losses) plus ``where=`` and the
other per-batch keywords, and ``reduction`` follows torch:

- ``"none"``: the function's per-example values;
- ``"sum"``: their sum;
- ``"mean"``: their mean, over the kept rows when the loss has ``ignore_index`` (torch's rule:
  ``polyloss.reduce(loss, where=labels != ignore_index)``). **All targets ignored** gives 0 with a
  zero gradient, where torch returns NaN: an all-padding batch then contributes nothing instead of
  turning the weights into NaN (the rule of ``polyloss.reduce`` and Keras).

**Wrapped functions.** ``AdversarialLoss``, ``GradientPenalty`` and ``VATLoss`` differentiate the
user's model: the constructor's first argument is the function of what is perturbed (``loss_fn``,
``logits_fn``; an ``nn.Module`` becomes a submodule), ``forward(x, *args, **kwargs)`` passes ``args``
and ``kwargs`` (all but ``where``, ``noise``, ``clean_logits``) on to it, and returns what the function
returns, each array reduced (``(loss, adversarial_loss)``: scalars, returned as they are).

A line with shaped parameters is a model head (``CRF``): its constructor takes the sizes
(``CRF(num_tags)``), creates the parameters at zero (``nn.Parameter``s; an initial value may be passed by
name) and takes ``allowed=``, boolean masks of the parameters (``polyloss.allowed_transitions(labels)``),
applied as ``where(allowed, parameter, -inf)`` on every call; ``forward`` returns the loss with the
reduction above, and ``decode`` the decoder's output (``crf_decode``: padded tags and scores).

Importing this module imports no framework (the rule of ``polyloss/``): torch is imported, the
classes are made and polyloss's torch adapter is loaded on the first use of a class (or of
``loss_class``), which comes before any ``torch.compile(fullgraph=True)`` call of one of its modules, so
the trace finds the adapter loaded (an import cannot be traced).
"""

from __future__ import annotations

import inspect

import polyloss
from polyloss import _wrappers
from polyloss.backends import preload as _preload

__all__ = ["Loss", "loss_class", "metrics", *(line.name for line in _wrappers.LOSSES)]

_REDUCTIONS = ("mean", "sum", "none")

# the adapters of the frameworks imported so far are loaded now, not on the first call, which may be
# inside torch.compile (and again by _load, once torch is imported)
_preload()

torch = None  # the framework: imported by _load, on the first use of a class


class _LossMethods:
    """The body of :class:`Loss`, the base of the generated classes (``Loss`` is made of it and
    ``torch.nn.Module`` by ``_load``): ``line`` (a :class:`polyloss._wrappers.LossClass`) says which
    function, and which of its arguments are inputs, settings, parameters and hyper-parameters."""

    line: _wrappers.LossClass
    # read from ``line`` once, when the class is made (forward reads only these: nothing to resolve
    # or import inside torch.compile)
    _function = None
    _inputs: tuple = ()
    _required = 0
    _held: tuple = ()
    _batch_keywords: tuple = ()
    _decoder = None
    _decoder_inputs: tuple = ()
    _decoder_keywords: tuple = ()
    _allowed: tuple = ()
    _wrapped: tuple = ()  # ("loss_fn",) for a line that wraps the user's function

    def __init__(self, *positional, reduction: str = "mean", **options):
        super().__init__()
        line = self.line
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        allowed_masks = options.pop("allowed", None) if line.shapes else None
        names = (*self._wrapped, *line.sizes, *line.settings)  # the wrapped loss_fn first, sizes, then a prior
        if len(positional) > len(names):
            raise TypeError(f"{type(self).__name__} takes {len(names)} positional argument(s) "
                            f"({', '.join(names) or 'none'}), got {len(positional)}")
        given = dict(zip(names, positional))
        hyper = line.hyperparameters
        for name, value in options.items():
            if name in given:
                raise TypeError(f"{type(self).__name__} got {name!r} twice")
            if name not in hyper and name not in names and name not in line.parameters:
                allowed = [*names, *line.parameters, *hyper, *(["allowed"] if line.shapes else []), "reduction"]
                raise TypeError(f"{type(self).__name__} got an unexpected argument {name!r}; "
                                f"it takes {', '.join(allowed)}")
            given[name] = value
        # shaped parameters start at zero; others need their initial value
        missing = [n for n in (*names, *(() if line.shapes else line.parameters)) if n not in given]
        if missing:
            raise TypeError(f"{type(self).__name__} needs {', '.join(missing)}")
        for name in self._wrapped:  # the user's model and loss: an nn.Module becomes a submodule
            if not callable(given[name]):
                raise TypeError(f"{type(self).__name__}: {name} must be a callable (a module or a function), got "
                                f"{type(given[name]).__name__}")
            setattr(self, name, given[name])
        self.sizes = {name: _size(type(self).__name__, name, given[name]) for name in line.sizes}
        self.hyperparameters = {name: given.get(name, default) for name, default in hyper.items()}
        for name in line.settings:  # a prior: a buffer, so that .to(device) moves it
            self.register_buffer(name, torch.as_tensor(given[name]))
        for name, shape in zip(line.parameters, line.shapes or [None] * len(line.parameters)):  # learned
            shape = None if shape is None else tuple(self.sizes[size] for size in shape)
            value = given.get(name)
            if value is None:
                value = torch.zeros(shape)
            elif not isinstance(value, torch.Tensor):
                value = torch.as_tensor(value, dtype=torch.get_default_dtype())
            if shape is not None and tuple(value.shape) != shape:
                raise ValueError(f"{type(self).__name__}: {name} must have shape {shape}, got {tuple(value.shape)}")
            self.register_parameter(name, torch.nn.Parameter(value.detach().clone()))
        self._allowed = ()
        if allowed_masks is not None:
            self._allowed = _register_allowed(self, allowed_masks)

    def forward(self, *inputs, **batch):
        if self._wrapped:  # the inputs beyond x, and the other keywords, are the wrapped function's
            (name,) = self._wrapped
            inputs, passed = inputs[:len(self._inputs)], inputs[len(self._inputs):]
            passed_keywords = {k: v for k, v in batch.items() if k not in self._batch_keywords}
            batch = {k: v for k, v in batch.items() if k in self._batch_keywords}
            function = getattr(self, name)
            batch[name] = lambda *z: function(*z, *passed, **passed_keywords)
        elif unknown := [name for name in batch if name not in self._batch_keywords]:
            raise TypeError(f"{type(self).__name__}.forward got unexpected keyword(s) {unknown}; "
                            f"it takes {', '.join(self._batch_keywords) or 'none'}")
        if not self._required <= len(inputs) <= len(self._inputs):
            raise TypeError(f"{type(self).__name__}.forward takes {len(self._inputs)} inputs "
                            f"({', '.join(self._inputs)}), got {len(inputs)}")
        named = dict(zip(self._inputs, inputs))
        loss = self._function(**named, **self._held_values(), **self.hyperparameters, **batch)
        if isinstance(loss, tuple):  # (loss, adversarial_loss), (loss, penalty): each reduced
            return tuple(self._reduced(named, value) for value in loss)
        return self._reduced(named, loss)

    def _reduced(self, named, loss):
        if self.reduction == "none" or loss.ndim == 0:  # a scalar (adversarial_loss's) is reduced already
            return loss
        if self.reduction == "sum":
            return polyloss.reduce(loss, "sum")
        return polyloss.reduce(loss, "mean", where=self._kept(named, loss))

    def _held_values(self) -> dict:
        """The settings and parameters passed to the function, ``allowed`` masks applied (``-inf``)."""
        held = {name: getattr(self, name) for name in self._held}
        for name in self._allowed:
            held[name] = torch.where(getattr(self, f"allowed_{name}"), held[name], -torch.inf)
        return held

    def decode(self, *inputs, **options):
        """The decoder's output on these inputs with the module's parameters (lines with a ``decoder``:
        ``CRF.decode(emissions, mask=None, fill=-1)`` -> ``(tags [B, T], scores [B])``, the tags padded
        with ``fill``)."""
        if self._decoder is None:
            raise AttributeError(f"{type(self).__name__} has no decoder")
        if len(inputs) != len(self._decoder_inputs):
            raise TypeError(f"{type(self).__name__}.decode takes {len(self._decoder_inputs)} inputs "
                            f"({', '.join(self._decoder_inputs)}), got {len(inputs)}")
        unknown = [name for name in options if name not in self._decoder_keywords]
        if unknown:
            raise TypeError(f"{type(self).__name__}.decode got unexpected keyword(s) {unknown}; "
                            f"it takes {', '.join(self._decoder_keywords)}")
        return self._decoder(*inputs, **self._held_values(), **options)

    def _kept(self, named, loss):
        """torch's "mean" with ``ignore_index``: the rows whose class id is not ignored."""
        ignore_index = self.hyperparameters.get("ignore_index")
        labels = named.get("labels")
        if ignore_index is None or not isinstance(labels, torch.Tensor) or labels.is_floating_point():
            return None
        if tuple(labels.shape) != tuple(loss.shape):  # probability labels: nothing is ignored
            return None
        return labels != ignore_index

    def extra_repr(self) -> str:
        changed = {k: v for k, v in self.hyperparameters.items() if v is not self.line.hyperparameters[k]}
        return ", ".join([*(f"{v!r}" for v in getattr(self, "sizes", {}).values()),
                          *(f"{k}={v!r}" for k, v in changed.items()), f"reduction={self.reduction!r}"])


def _size(cls: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{cls}: {name} must be a positive int, got {value!r}")
    return value


def _register_allowed(module, masks) -> tuple:
    """``allowed=``: boolean masks of the parameters, in their order (a tuple, None for a free one) or by
    name (a dict), registered as buffers ``allowed_<name>``; returns the names that have one."""
    line, cls = module.line, type(module).__name__
    if not isinstance(masks, dict):
        masks = list(masks)
        if len(masks) != len(line.parameters):
            raise ValueError(f"{cls}: allowed must give one mask per parameter {line.parameters} (or a dict), "
                             f"got {len(masks)}")
        masks = dict(zip(line.parameters, masks))
    unknown = [name for name in masks if name not in line.parameters]
    if unknown:
        raise ValueError(f"{cls}: allowed names {unknown}, which are not parameters {line.parameters}")
    names = []
    for name, mask in masks.items():
        if mask is None:
            continue
        parameter = getattr(module, name)
        mask = torch.as_tensor(mask, device=parameter.device)
        if mask.dtype != torch.bool or tuple(mask.shape) != tuple(parameter.shape):
            raise ValueError(f"{cls}: allowed mask of {name} must be booleans of shape {tuple(parameter.shape)}, "
                             f"got {mask.dtype} of shape {tuple(mask.shape)}")
        module.register_buffer(f"allowed_{name}", mask)
        names.append(name)
    return tuple(names)


def loss_class(line: _wrappers.LossClass) -> type:
    """The ``nn.Module`` class of one table line (how every class of this module is made; call it for a
    line of your own, e.g. ``LossClass("infonce_from_embeddings", "ClipLoss", parameters=("temperature",))``
    for a learnable temperature)."""
    _load()
    function = line.resolve()
    hyper = line.hyperparameters
    sized = bool(line.shapes)
    wrapped = () if line.wrapped is None else (line.wrapped,)
    signature = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in (*wrapped, *line.sizes, *line.settings)]
        + [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, **({"default": None} if sized else {}))
           for n in line.parameters]
        + [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d) for n, d in hyper.items()]
        + ([inspect.Parameter("allowed", inspect.Parameter.KEYWORD_ONLY, default=None)] if sized else [])
        + [inspect.Parameter("reduction", inspect.Parameter.KEYWORD_ONLY, default="mean")]
    )
    doc = (f"``torch.nn.Module`` for :func:`polyloss.{line.function}`: ``forward({', '.join(line.inputs)}"
           + (", *args" if wrapped else "") + "".join(f", {k}=None" for k in line.batch_keywords)
           + (f", **kwargs)`` (``args``, ``kwargs``: passed on to ``{line.wrapped}``), " if wrapped else ")``, ")
           + f"hyper-parameters {', '.join(hyper) or 'none'}, reduction \"mean\" (default), \"sum\" or \"none\" "
           + "(see the module docstring).\n\n" + (function.__doc__ or "").split("\n")[0])
    if sized:
        doc += (f"\n\n``{line.name}({', '.join(line.sizes)}, allowed=None)``: learned {', '.join(line.parameters)} "
                "(``nn.Parameter``s, zero at first)"
                + (f"; ``decode({', '.join(line.decoder_inputs)}, ...)`` is :func:`polyloss.{line.decoder}`."
                   if line.decoder else "."))
    cls = type(line.name, (Loss,), {
        "line": line, "__doc__": doc, "__module__": __name__, "_function": staticmethod(function),
        "_inputs": line.inputs, "_required": line.required_inputs, "_held": (*line.settings, *line.parameters),
        "_batch_keywords": line.batch_keywords, "_wrapped": wrapped,
        "_decoder": staticmethod(line.resolve(line.decoder)) if line.decoder else None,
        "_decoder_inputs": line.decoder_inputs if line.decoder else (),
        "_decoder_keywords": line.decoder_keywords if line.decoder else (),
    })
    cls.__init__ = _with_signature(Loss.__init__, signature)
    return cls


def _with_signature(init, signature):
    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)

    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *signature.parameters.values()]
    __init__.__signature__ = signature.replace(parameters=params)
    return __init__


def _load() -> None:
    """Import torch, make ``Loss`` and one class per line of the table, and load the torch adapter (once)."""
    global torch, Loss
    if torch is not None:
        return
    import torch as framework

    torch = framework
    Loss = type("Loss", (_LossMethods, torch.nn.Module), {"__module__": __name__, "__doc__": _LossMethods.__doc__})
    _preload()
    for line in _wrappers.LOSSES:
        globals()[line.name] = loss_class(line)


_CLASSES = frozenset(["Loss", *(line.name for line in _wrappers.LOSSES)])


def __getattr__(name):
    # the classes are made on first use (importing this module imports no framework), the torchmetrics
    # classes when ``metrics`` is first used: the losses work without torchmetrics
    if name in _CLASSES:
        _load()
        return globals()[name]
    if name == "metrics":
        import importlib

        return importlib.import_module(f"{__name__}.metrics")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})
