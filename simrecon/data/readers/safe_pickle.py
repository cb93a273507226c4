"""Loading pickled pandas DataFrames (PandaSet ``.pkl.gz``) without trusting the pickle.

A pickle can name any importable callable and call it while loading, so ``pandas.read_pickle`` on a
file from elsewhere can run arbitrary code. :func:`load_dataframe` unpickles through
:class:`RestrictedUnpickler`, whose ``find_class`` hands out only the pandas / numpy classes and
functions a plain DataFrame of numbers, booleans and ``object`` strings is rebuilt from, and refuses
every other global with a :class:`ReaderError` naming it. pandas is needed (imported lazily): without it
the reader says so in one line.
"""

from __future__ import annotations

import gzip
import importlib
import pickle
import zlib
from pathlib import Path
from typing import Any

from ._common import ReaderError

# (module, name) pairs a pickled DataFrame / Series may reference, after pandas' own renames of old
# locations (pandas.compat.pickle_compat._class_locations_map) and Python 2 names.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    # pandas containers and their internals
    ("pandas", "DataFrame"), ("pandas.core.frame", "DataFrame"),
    ("pandas", "Series"), ("pandas.core.series", "Series"),
    ("pandas.core.internals.managers", "BlockManager"), ("pandas.core.internals.managers", "SingleBlockManager"),
    ("pandas.core.internals", "BlockManager"), ("pandas.core.internals", "SingleBlockManager"),
    ("pandas._libs.internals", "_unpickle_block"),
    ("pandas", "Index"), ("pandas.core.indexes.base", "Index"), ("pandas.core.indexes.base", "_new_Index"),
    ("pandas", "RangeIndex"), ("pandas.core.indexes.range", "RangeIndex"),
    # numpy arrays, dtypes and scalars
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    # plain Python helpers used by protocol 0-2 pickles
    ("builtins", "slice"), ("copyreg", "_reconstructor"), ("builtins", "object"), ("_codecs", "encode"),
})

PANDAS_HINT = "reading PandaSet .pkl.gz files needs pandas: pip install 'simrecon[pandaset]' (or pip install pandas)"


class RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, module: str, name: str):
        self.module, self.name = module, name
        super().__init__(f"{module}.{name}")


def _base_unpickler() -> type:
    """pandas' compat unpickler (maps renamed pandas classes of old pickles) or the plain Python one."""
    try:
        from pandas.compat.pickle_compat import Unpickler  # type: ignore[attr-defined]

        if isinstance(Unpickler, type) and issubclass(Unpickler, pickle._Unpickler):  # type: ignore[attr-defined]
            return Unpickler
    except ImportError:
        pass
    return pickle._Unpickler  # type: ignore[attr-defined]


def _renames() -> dict[tuple[str, str], tuple[str, str]]:
    try:
        from pandas.compat import pickle_compat

        return dict(getattr(pickle_compat, "_class_locations_map", {}))
    except ImportError:
        return {}


def _canonical(module: str, name: str, proto: int) -> tuple[str, str]:
    import _compat_pickle

    module, name = _renames().get((module, name), (module, name))
    if proto < 3:  # Python 2 names, as pickle.Unpickler(fix_imports=True) maps them
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
    if module == "numpy.core" or module.startswith("numpy.core."):  # numpy 1 locations
        module = "numpy._core" + module[len("numpy.core"):]
    return module, name


def _resolve(module: str, name: str) -> Any:
    if module.startswith("numpy._core"):
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):  # numpy 1 installed: the old location
            module = "numpy.core" + module[len("numpy._core"):]
    return getattr(importlib.import_module(module), name)


class RestrictedUnpickler(_base_unpickler()):  # type: ignore[misc]
    """Unpickler that resolves only :data:`ALLOWED_GLOBALS`; anything else raises :class:`RefusedGlobal`."""

    def find_class(self, module: str, name: str) -> Any:
        key = _canonical(module, name, getattr(self, "proto", 5))
        if key not in ALLOWED_GLOBALS:
            raise RefusedGlobal(module, name)
        return _resolve(*key)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def load_dataframe(path: Path) -> Any:
    """The pandas DataFrame pickled (gzip-compressed when the name ends in .gz) in ``path``."""
    try:
        import pandas as pd
    except ImportError:
        raise ReaderError(path, "", PANDAS_HINT) from None
    if not path.is_file():
        raise ReaderError(path, "", "file does not exist")
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            obj = RestrictedUnpickler(fh).load()
    except RefusedGlobal as exc:
        hint = ""
        if "String" in exc.name or exc.module.startswith("pyarrow"):
            hint = ("; pandas >= 3 string columns and column names (string/arrow dtype) are not accepted, the "
                    "published PandaSet files use object strings")
        raise ReaderError(path, "", f"refusing to unpickle {exc.module}.{exc.name}: only the pandas/numpy classes "
                                    f"of a plain DataFrame are allowed (a pickle can run code){hint}") from None
    except (OSError, EOFError, zlib.error, pickle.UnpicklingError, AttributeError, ImportError, IndexError,
            KeyError, TypeError, ValueError, MemoryError, RecursionError) as exc:
        raise ReaderError(path, "", f"not a readable pickled DataFrame ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, pd.DataFrame):
        raise ReaderError(path, "", f"expected a pickled pandas DataFrame, got {type(obj).__name__}")
    return obj
