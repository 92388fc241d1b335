"""Losses, one module per family, each written once against the array API."""

from polyloss.losses.multilabel import (
    global_pointer_crossentropy,
    global_pointer_mask,
    multilabel_crossentropy,
    multilabel_divergence,
    sparse_global_pointer_crossentropy,
    sparse_multilabel_crossentropy,
)

__all__ = [
    "multilabel_crossentropy",
    "sparse_multilabel_crossentropy",
    "global_pointer_crossentropy",
    "sparse_global_pointer_crossentropy",
    "global_pointer_mask",
    "multilabel_divergence",
]
