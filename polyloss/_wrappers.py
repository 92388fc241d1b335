"""The wrappers' table: which public losses and metrics get a native class in ``polyloss.torch``
(``nn.Module``, ``torchmetrics.Metric``) and ``polyloss.keras`` (``keras.losses.Loss``,
``keras.metrics.Metric``), one line each. Both wrappers generate every class from this table; nothing
here imports a framework.

A loss line names the function (a dotted path below ``polyloss``, so a family reached as
``polyloss.multitask`` is ``"multitask.<function>"``) and the class name; everything else is read
from the function's signature:

- its positional parameters are the **inputs** (``forward(logits, labels)``; Keras passes
  ``(y_true, y_pred)`` and the class passes them on as ``(y_pred, y_true)``);
- its keyword-only parameters are the **hyper-parameters** (constructor arguments), except
  ``where`` and the names in ``per_batch``, which are data of each batch (``forward`` keywords);
- a Keras class exists when the function takes exactly two inputs, a prediction and a target whose
  name is in :data:`TARGETS`; targets in :data:`INDEX_TARGETS` are integer ids, and Keras's float
  ``y_true`` is cast back to ``int32`` for them (for ``labels``: when it has fewer axes than
  ``y_pred``, i.e. class ids);
- a first positional parameter named in :data:`CALLABLES` (``loss_fn``, ``logits_fn``: the
  regularisers that differentiate the user's model, ``adversarial_loss(loss_fn, x, ...)``) is the
  **wrapped function**, not an input: the torch class takes it as its first constructor argument (an
  ``nn.Module`` is registered as a submodule), ``forward`` takes the remaining inputs (``x``) and
  passes any further positional and keyword arguments (those not in ``where`` / ``per_batch``) on
  to it (``forward(x, labels)`` differentiates ``z -> loss_fn(z, labels)``); reductions apply to
  each returned array (``(loss, adversarial_loss)``: both). Such a line has no Keras class (a Keras
  loss sees ``(y_true, y_pred)``, not the model: ``docs/adversarial.md`` has the ``train_step``).

Adding a family's class is one line in :data:`LOSSES`. Two optional fields cover the rest:

- ``settings``: positional arrays that belong to the loss rather than to a batch (a class prior):
  constructor arguments, a buffer of the ``nn.Module``, a list in the Keras config;
- ``parameters``: arguments that the module learns (a CRF's transition matrix, a learnable
  temperature): constructor arguments holding their initial values, held as ``nn.Parameter``s and
  passed to the function on each call. A Keras ``Loss`` holds no weights, so a line with
  parameters has no Keras class (a Keras layer is the place for them).

A line whose parameters have ``shapes`` is a model head rather than a criterion (the linear-chain
CRF): each shape names its sizes (``("num_tags", "num_tags")``), the constructor takes those sizes
positionally (``CRF(num_tags)``) and creates the parameters at zero (an initial value may still be
passed by name), and takes ``allowed=``, boolean masks of the parameters in their order (what
``polyloss.allowed_transitions`` returns), applied as ``where(allowed, parameter, -inf)`` on every call.
Such a line has a Keras layer (``polyloss.keras.layers``) with the parameters as weights. ``decoder``
names a second function of the same parameters (``"crf_decode"``): the torch module gets a ``decode``
method, and the Keras layer returns its first output.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass

__all__ = ["LossClass", "MetricClass", "LOSSES", "METRICS", "TARGETS", "INDEX_TARGETS", "CALLABLES", "keras_name"]

# the names a target (Keras's y_true) has in polyloss's signatures
TARGETS = ("labels", "indices", "spans", "positive_index")
# targets that are always integer ids (Keras casts y_true to float: cast back)
INDEX_TARGETS = ("indices", "spans", "positive_index")
# the names of a wrapped function (the user's model and loss) in polyloss's signatures
CALLABLES = ("loss_fn", "logits_fn")
# keyword arguments that are data of each call, never hyper-parameters
_ALWAYS_PER_BATCH = ("where",)


@dataclass(frozen=True)
class LossClass:
    """One line of the table: a native class for one public loss (see the module docstring)."""

    function: str
    name: str
    settings: tuple[str, ...] = ()
    per_batch: tuple[str, ...] = ()
    parameters: tuple[str, ...] = ()
    shapes: tuple[tuple[str, ...], ...] = ()
    decoder: str | None = None

    def __post_init__(self):
        if self.shapes and len(self.shapes) != len(self.parameters):
            raise ValueError(f"{self.name}: shapes must give one shape per parameter {self.parameters}, "
                             f"got {self.shapes}")

    def resolve(self, function: str | None = None):
        """The function object, ``polyloss.<function>`` (``function``: another one, e.g. the decoder)."""
        target = importlib.import_module("polyloss")
        for part in (function or self.function).split("."):
            target = getattr(target, part)
        return target

    @property
    def sizes(self) -> tuple[str, ...]:
        """The size arguments of a line with ``shapes`` (``("num_tags",)``), in order of appearance."""
        return tuple(dict.fromkeys(size for shape in self.shapes for size in shape))

    @property
    def decoder_inputs(self) -> tuple[str, ...]:
        """The positional arrays of the decoder (its parameters removed): ``("emissions",)``."""
        params = inspect.signature(self.resolve(self.decoder)).parameters.values()
        return tuple(p.name for p in params
                     if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in self.parameters)

    @property
    def decoder_keywords(self) -> tuple[str, ...]:
        """The keyword arguments of the decoder other than its parameters (``("mask", "fill")``)."""
        params = inspect.signature(self.resolve(self.decoder)).parameters.values()
        return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name not in self.parameters)

    @property
    def signature(self) -> inspect.Signature:
        return inspect.signature(self.resolve())

    @property
    def wrapped(self) -> str | None:
        """The name of the wrapped function (the first positional parameter, if in :data:`CALLABLES`)."""
        first = next(iter(self.signature.parameters.values()), None)
        if first is not None and first.kind is first.POSITIONAL_OR_KEYWORD and first.name in CALLABLES:
            return first.name
        return None

    @property
    def inputs(self) -> tuple[str, ...]:
        """The positional arrays of each call (the wrapped function, ``settings`` and ``parameters`` removed)."""
        skip = {self.wrapped, *self.settings, *self.parameters}
        return tuple(p.name for p in self.signature.parameters.values()
                     if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in skip)

    @property
    def required_inputs(self) -> int:
        """How many of :attr:`inputs` have no default (``infonce_from_embeddings(a, b=None)``: 1)."""
        params = self.signature.parameters
        return sum(params[name].default is inspect.Parameter.empty for name in self.inputs)

    @property
    def hyperparameters(self) -> dict:
        """The constructor's keyword arguments and their defaults, in the function's order."""
        skip = {*_ALWAYS_PER_BATCH, *self.per_batch, *self.parameters}
        return {p.name: p.default for p in self.signature.parameters.values()
                if p.kind is p.KEYWORD_ONLY and p.name not in skip}

    @property
    def batch_keywords(self) -> tuple[str, ...]:
        """The keyword arguments of ``forward`` (``where`` and ``per_batch``, those the function takes)."""
        names = self.signature.parameters
        return tuple(n for n in (*_ALWAYS_PER_BATCH, *self.per_batch) if n in names)

    @property
    def keras(self) -> bool:
        """Whether a Keras ``Loss`` exists: a prediction and a target, nothing learned, nothing wrapped."""
        return (len(self.inputs) == 2 and self.inputs[1] in TARGETS and not self.parameters
                and self.wrapped is None)

    @property
    def keras_layer(self) -> bool:
        """Whether a Keras layer exists (``polyloss.keras.layers``): the parameters have shapes."""
        return bool(self.shapes)

    @property
    def keras_name(self) -> str:
        return keras_name(self.name)


def keras_name(name: str) -> str:
    """The Keras spelling of a class name: ``CrossEntropy`` is ``Crossentropy`` (as
    ``keras.losses.BinaryCrossentropy``)."""
    return name.replace("CrossEntropy", "Crossentropy")


# One line per public loss. Not here: global_pointer_mask, adjust_logits and squareplus (not losses),
# flooding (it transforms a loss value: polyloss.flooding(criterion(logits, labels), level)).
LOSSES: tuple[LossClass, ...] = (
    # multilabel
    LossClass("multilabel_crossentropy", "MultilabelCrossEntropy"),
    LossClass("sparse_multilabel_crossentropy", "SparseMultilabelCrossEntropy"),
    LossClass("global_pointer_crossentropy", "GlobalPointerCrossEntropy"),
    LossClass("sparse_global_pointer_crossentropy", "SparseGlobalPointerCrossEntropy"),
    LossClass("multilabel_divergence", "MultilabelDivergence"),
    # classification
    LossClass("softmax_crossentropy", "SoftmaxCrossEntropy"),
    LossClass("sigmoid_crossentropy", "SigmoidCrossEntropy"),
    LossClass("focal_loss", "FocalLoss"),
    LossClass("poly1_crossentropy", "Poly1CrossEntropy"),
    LossClass("poly1_focal_loss", "Poly1FocalLoss"),
    LossClass("hard_truncation_loss", "HardTruncationLoss"),
    LossClass("softened_truncation_loss", "SoftenedTruncationLoss"),
    LossClass("logit_adjusted_crossentropy", "LogitAdjustedCrossEntropy", settings=("prior",)),
    LossClass("smoothed_f1_weighted_crossentropy", "SmoothedF1WeightedCrossEntropy", per_batch=("f1",)),
    # regularizers
    LossClass("rdrop_divergence", "RDropDivergence"),
    LossClass("rdrop_loss", "RDropLoss"),
    # contrastive
    LossClass("infonce", "InfoNCE"),
    LossClass("infonce_from_embeddings", "InfoNCEFromEmbeddings"),
    LossClass("flatnce", "FlatNCE"),
    LossClass("am_softmax", "AMSoftmaxLoss"),
    LossClass("arcface", "ArcFaceLoss"),
    LossClass("cosent_loss", "CoSENTLoss"),
    LossClass("unified_pairwise_loss", "UnifiedPairwiseLoss"),
    LossClass("circle_loss", "CircleLoss"),
    # adversarial: the wrapped loss_fn / logits_fn is the constructor's first argument (rules above)
    LossClass("adversarial_loss", "AdversarialLoss"),
    LossClass("gradient_penalty", "GradientPenalty"),
    LossClass("vat_loss", "VATLoss", per_batch=("noise", "clean_logits")),
    # structured: a model head with learned transitions, start and end, and a Viterbi decode
    LossClass("crf_nll", "CRF", per_batch=("mask",), parameters=("transitions", "start", "end"),
              shapes=(("num_tags", "num_tags"), ("num_tags",), ("num_tags",)), decoder="crf_decode"),
)


@dataclass(frozen=True)
class MetricClass:
    """One line of the metrics' table: a native metric over a state object of ``polyloss.metrics``.

    ``state`` names the class (``PrecisionRecallF1``); its declared ``fields`` decide the native
    states (``"sum"``: counts, added across batches and processes; ``"cat"``: values, concatenated)
    and its ``outputs`` name the entries of a tuple result. ``output`` picks one of them (``"f1"`` of
    ``(precision, recall, f1)``), for frameworks that log one number per metric. The constructor
    takes the state object's own keyword arguments. Keras classes exist for metrics whose fields
    are all sums (fixed-size variables) and whose result is one number.
    """

    name: str
    state: str
    output: str | None = None

    def resolve(self):
        from polyloss import metrics

        return getattr(metrics, self.state)

    @property
    def counting(self) -> bool:
        """Whether every field is a sum (a count)."""
        return all(how == "sum" for how in self.resolve().fields.values())

    @property
    def index(self) -> int | None:
        """The position of ``output`` in the state object's tuple result (None: the whole result)."""
        return None if self.output is None else self.resolve().outputs.index(self.output)

    @property
    def keras(self) -> bool:
        return self.counting and (self.output is not None or self.resolve().outputs is None)


METRICS: tuple[MetricClass, ...] = (
    MetricClass("PrecisionRecallF1", "PrecisionRecallF1"),
    MetricClass("MultilabelF1", "PrecisionRecallF1", output="f1"),
    MetricClass("MultilabelPrecision", "PrecisionRecallF1", output="precision"),
    MetricClass("MultilabelRecall", "PrecisionRecallF1", output="recall"),
    MetricClass("Accuracy", "Accuracy"),
    MetricClass("GlobalPointerF1", "GlobalPointerF1", output="f1"),
    MetricClass("GlobalPointerPrecisionRecallF1", "GlobalPointerF1"),
    MetricClass("BestThreshold", "BestThreshold"),
    MetricClass("Spearman", "Spearman"),
    MetricClass("Pearson", "Pearson"),
)
