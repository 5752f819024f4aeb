"""Modules imported on first use, so that a command's ``--help`` or usage error comes at once.

SciPy's ``ndimage`` and pandas take about half a second each to import; most commands need them only
once they run. :func:`lazy_import` is the standard library's recipe (``importlib.util.LazyLoader``):
the module object exists at once and is executed the first time one of its attributes is read.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

__all__ = ["lazy_import"]


def lazy_import(name: str) -> ModuleType:
    """The module ``name``, executed on first attribute access (at once if it is already imported)."""
    if name in sys.modules:
        return sys.modules[name]
    parent = name.rpartition(".")[0]
    if parent:
        importlib.import_module(parent)  # a package's own __init__ is cheap; the submodule is what waits
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
