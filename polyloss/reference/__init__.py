"""polyloss.reference: the independent oracle.

Plain NumPy float64 versions of the library's functions, written in the most obvious form
(the formula from the SPEC, Python loops over rows, plain lists, ``math`` functions, exactly
rounded sums). They share no code with the array-API core. The tests and ``polyloss check``
compare every backend against these functions; you can call them too, to check your own
implementation or a port of a loss on small inputs::

    >>> import numpy as np
    >>> from polyloss import reference
    >>> np.round(reference.multilabel_crossentropy([[2.0, -1.0]], [[1, 0]]), 4)
    array([0.4402])

They are slow (pure Python loops): use them on test-sized arrays, not for training.
"""

from polyloss.reference.classification import (
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
)
from polyloss.reference.multilabel import (
    global_pointer_crossentropy,
    global_pointer_mask,
    multilabel_crossentropy,
    multilabel_divergence,
    reduce,
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
    "reduce",
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
