"""Functions compiled to machine code by numba, the same way everywhere in the service.

``compiled`` is ``numba.njit`` with the settings every kernel shares: machine code cached on disk
(``NUMBA_CACHE_DIR``, else ``__pycache__`` beside the source), the interpreter lock released, no bounds checks
(each kernel indexes within the arrays it is given) and NumPy's error model (a division by zero gives inf or NaN,
as NumPy does, rather than raising), strictly in IEEE order (no fast-math). Nothing is compiled when a module is
imported: a function compiles at its first call, or when a ``warm_up`` calls it (gunicorn's master does, before
it forks, so that the workers share the machine code).
"""

from __future__ import annotations

from typing import Any

import numba

_SETTINGS = {"cache": True, "nogil": True, "boundscheck": False, "error_model": "numpy"}


def compiled(function: Any) -> Any:
    """``numba.njit`` with the on-disk cache; without it when no cache folder is writable (numba refuses to
    decorate then): each process then compiles once, a few seconds, rather than the import failing."""
    try:
        return numba.njit(**_SETTINGS)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(**{**_SETTINGS, "cache": False})(function)
