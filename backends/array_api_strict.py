"""array-api-strict: proves the core uses only the standard (api_version 2024.12), and its
extra devices prove that constants are created on the input's device."""

from __future__ import annotations

import array_api_strict as _strict
import numpy as np

from ._base import Backend

API_VERSION = "2024.12"


class ArrayAPIStrictBackend(Backend):
    name = "array_api_strict"

    def __init__(self):
        _strict.set_array_api_strict_flags(api_version=API_VERSION)
        self._array_type = type(_strict.asarray(0.0))

    def is_array(self, x) -> bool:
        return isinstance(x, self._array_type)

    @property
    def namespace(self):
        return _strict

    def device(self, x):
        return x.device

    def devices(self):
        return [("cpu", _strict.Device("CPU_DEVICE")), ("device1", _strict.Device("device1"))]

    def from_numpy(self, a, *, dtype=None, device=None):
        a = np.asarray(a)
        if dtype is not None and np.issubdtype(a.dtype, np.floating):
            a = a.astype(dtype)
        return _strict.asarray(a, device=device)

    def to_numpy(self, x):
        return np.asarray(x.to_device(_strict.Device("CPU_DEVICE")))
