"""Losses, one module per family, each written once against the array API."""

from polyloss.losses.classification import (
    adjust_logits,
    focal_loss,
    hard_truncation_loss,
    logit_adjusted_crossentropy,
    poly1_crossentropy,
    poly1_focal_loss,
    sigmoid_crossentropy,
    smoothed_f1_weighted_crossentropy,
    softened_truncation_loss,
    softmax_crossentropy,
)
from polyloss.losses.multilabel import (
    global_pointer_crossentropy,
    global_pointer_mask,
    multilabel_crossentropy,
    multilabel_divergence,
    sparse_global_pointer_crossentropy,
    sparse_multilabel_crossentropy,
)
from polyloss.losses.regularizers import flooding, rdrop_divergence, rdrop_loss, squareplus

__all__ = [
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
]
