"""Packages that are also the API function of the same name.

``edgedistill.train`` and ``edgedistill.export`` are sub-packages, and Python sets a
package's attribute to the sub-package whenever it is imported, so a plain function of
that name would be replaced. Instead the sub-package's module object becomes callable:
``edgedistill.train(model, data, epochs=1)`` runs ``library.train`` and
``edgedistill.train.Trainer`` still names the class.
"""

from __future__ import annotations

import importlib
import sys
import types


def make_callable(module_name: str, function: str) -> None:
    """Calling the module ``module_name`` calls ``edgedistill.library.<function>``."""

    def __call__(self, *args, **kwargs):
        return getattr(importlib.import_module("edgedistill.library"), function)(*args, **kwargs)

    cls = type("CallablePackage", (types.ModuleType,), {"__call__": __call__})
    sys.modules[module_name].__class__ = cls
