"""polyloss.reference: the independent oracle.

Plain NumPy float64 versions of the library's functions, written in the most obvious form
(the formula of the family's page in ``docs/``, Python loops over rows, plain lists, ``math`` functions, exactly
rounded sums). They share no code with the array-API core. The tests and ``polyloss check``
compare every backend against these functions; you can call them too, to check your own
implementation or a port of a loss on small inputs::

    >>> import numpy as np
    >>> from polyloss import reference
    >>> np.round(reference.multilabel_crossentropy([[2.0, -1.0]], [[1, 0]]), 4)
    array([0.4402])

They are slow (pure Python loops): use them on test-sized arrays, not for training.
"""

from polyloss.reference import adversarial, classification, contrastive, metrics, multilabel, multitask, structured
from polyloss.reference.adversarial import *  # noqa: F401,F403
from polyloss.reference.classification import *  # noqa: F401,F403
from polyloss.reference.contrastive import *  # noqa: F401,F403
from polyloss.reference.metrics import *  # noqa: F401,F403
from polyloss.reference.multilabel import *  # noqa: F401,F403
from polyloss.reference.structured import *  # noqa: F401,F403

# the multi-task functions live in polyloss.reference.multitask, as polyloss.multitask's do
__all__ = [*multilabel.__all__, *classification.__all__, *contrastive.__all__, *metrics.__all__,
           *adversarial.__all__, *structured.__all__, "multitask"]
