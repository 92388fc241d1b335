"""polyloss: training losses and evaluation metrics written once against the Python array API.

Every function takes arrays of any supported framework (NumPy, PyTorch, JAX, TensorFlow,
array-api-strict) and returns arrays of the same framework, on the same device.
``polyloss.reference`` holds independent NumPy float64 versions of each function, and
``polyloss check`` (or ``polyloss.conformance``) compares the two on every installed backend.

Importing polyloss imports NumPy and array-api-compat only; a framework's adapter is loaded
the first time one of its arrays arrives.
"""

from polyloss import losses as _losses
from polyloss import metrics
from polyloss._checks import value_checks
from polyloss._namespace import get_namespace
from polyloss._reduce import reduce
from polyloss.losses import *  # noqa: F401,F403  (every loss, listed in polyloss.losses.__all__)

__version__ = "0.1.0"

# The adapters of the frameworks imported before polyloss load now rather than on the first call, which
# may be inside torch.compile(fullgraph=True), where an import cannot be traced (polyloss.torch does the
# same for a torch imported later). No framework is imported here.
from polyloss import backends as _backends  # noqa: E402

_backends.preload()

__all__ = ["get_namespace", "reduce", "value_checks", *_losses.__all__, "metrics", "reference", "conformance"]  # noqa: F405


def __getattr__(name):
    # the reference and the conformance registry load on first use
    if name in ("reference", "conformance", "backends"):
        import importlib

        return importlib.import_module(f"polyloss.{name}")
    raise AttributeError(f"module 'polyloss' has no attribute {name!r}")
