"""polyloss: training losses and evaluation metrics written once against the Python array API.

Every function takes arrays of any supported framework (NumPy, PyTorch, JAX, TensorFlow,
array-api-strict) and returns arrays of the same framework, on the same device.
``polyloss.reference`` holds independent NumPy float64 versions of each function, and
``polyloss check`` (or ``polyloss.conformance``) compares the two on every installed backend.

Importing polyloss imports NumPy and array-api-compat only; a framework's adapter is loaded
the first time one of its arrays arrives.
"""

from polyloss._checks import value_checks
from polyloss._namespace import get_namespace
from polyloss._reduce import reduce
from polyloss.losses import (
    adjust_logits,
    flooding,
    focal_loss,
    hard_truncation_loss,
    logit_adjusted_crossentropy,
    poly1_crossentropy,
    poly1_focal_loss,
    rdrop_divergence,
    rdrop_loss,
    sigmoid_crossentropy,
    smoothed_f1_weighted_crossentropy,
    softened_truncation_loss,
    softmax_crossentropy,
    squareplus,
    global_pointer_crossentropy,
    global_pointer_mask,
    multilabel_crossentropy,
    multilabel_divergence,
    sparse_global_pointer_crossentropy,
    sparse_multilabel_crossentropy,
)

__version__ = "0.1.0"

__all__ = [
    "get_namespace",
    "reduce",
    "value_checks",
    "multilabel_crossentropy",
    "sparse_multilabel_crossentropy",
    "global_pointer_crossentropy",
    "sparse_global_pointer_crossentropy",
    "global_pointer_mask",
    "multilabel_divergence",
    "softmax_crossentropy",
    "sigmoid_crossentropy",
    "focal_loss",
    "hard_truncation_loss",
    "softened_truncation_loss",
    "logit_adjusted_crossentropy",
    "adjust_logits",
    "smoothed_f1_weighted_crossentropy",
    "poly1_crossentropy",
    "poly1_focal_loss",
    "flooding",
    "rdrop_divergence",
    "rdrop_loss",
    "squareplus",
    "reference",
    "conformance",
]


def __getattr__(name):
    # the reference and the conformance registry load on first use
    if name in ("reference", "conformance", "backends"):
        import importlib

        return importlib.import_module(f"polyloss.{name}")
    raise AttributeError(f"module 'polyloss' has no attribute {name!r}")
