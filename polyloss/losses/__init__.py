"""Losses, one module per family, each written once against the array API. Each family module's
``__all__`` is the list of its public functions; this package re-exports them."""

from polyloss.losses import adversarial, classification, contrastive, multilabel, regularizers, structured
from polyloss.losses.adversarial import *  # noqa: F401,F403
from polyloss.losses.classification import *  # noqa: F401,F403
from polyloss.losses.contrastive import *  # noqa: F401,F403
from polyloss.losses.multilabel import *  # noqa: F401,F403
from polyloss.losses.regularizers import *  # noqa: F401,F403
from polyloss.losses.structured import *  # noqa: F401,F403

__all__ = [*multilabel.__all__, *classification.__all__, *regularizers.__all__, *contrastive.__all__,
           *adversarial.__all__, *structured.__all__]
