"""Parsing JSON and YAML written by someone else: every failure is one ``InputFileError`` naming the file.

Python's parsers fail on hostile text in ways that are not parse errors: ``[`` repeated 100000 times
raises RecursionError, and a document nested a few hundred levels deep parses but then breaks every
recursive consumer (``copy.deepcopy``, ``json.dumps``). Nesting is therefore bounded to ``MAX_DEPTH``
levels (a drive log needs 4, dataset tables about 6). An integer literal beyond the float range (a
401-digit ``fl_x``) is read as +-inf, like the float literal ``1e999``, so the numeric checks that
refuse NaN and infinity refuse it too, naming its field. NaN and Infinity literals are kept: the
checks of each field refuse them with the field's name.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

MAX_DEPTH = 64
_FLOAT_MAX = sys.float_info.max


class InputFileError(ValueError):
    """A file that cannot be parsed; the message is one line, ``file: what is wrong``."""

    def __init__(self, file: str | Path, message: str):
        self.file, self.detail = str(file), message
        super().__init__(f"{file}: {message}")


def _real_quotes(arr: np.ndarray) -> np.ndarray:
    """Positions of the quotes that open or close JSON strings (not those escaped by an odd backslash run)."""
    quotes = np.flatnonzero(arr == ord('"'))
    after_bs = quotes[(quotes > 0) & (arr[np.maximum(quotes - 1, 0)] == ord("\\"))]
    if not after_bs.size:
        return quotes
    bs = np.flatnonzero(arr == ord("\\"))
    starts = np.ones(bs.size, bool)
    starts[1:] = bs[1:] != bs[:-1] + 1
    run_start = bs[np.maximum.accumulate(np.where(starts, np.arange(bs.size), 0))]
    run_len = after_bs - run_start[np.searchsorted(bs, after_bs - 1)]
    return np.setdiff1d(quotes, after_bs[run_len % 2 == 1], assume_unique=True)


def _scan_json(data: bytes) -> tuple[int, int]:
    """(deepest bracket nesting outside strings, longest run of digits) of JSON text; numpy, no recursion."""
    arr = np.frombuffer(data, np.uint8)
    if not arr.size:
        return 0, 0
    opens = (arr == ord("[")) | (arr == ord("{"))
    brackets = np.flatnonzero(opens | (arr == ord("]")) | (arr == ord("}")))
    outside = np.searchsorted(_real_quotes(arr), brackets) % 2 == 0  # an even number of quotes before it
    steps = opens[brackets[outside]].astype(np.int64) * 2 - 1
    depth = int(np.cumsum(steps).max()) if steps.size else 0
    digit = np.zeros(arr.size + 2, np.int8)
    digit[1:-1] = (arr >= ord("0")) & (arr <= ord("9"))
    edges = np.flatnonzero(np.diff(digit))  # alternating starts and ends of digit runs
    longest = int((edges[1::2] - edges[::2]).max()) if edges.size else 0
    return depth, longest


def _int_or_inf(text: str) -> int | float:
    """A JSON integer literal; one beyond the float range becomes +-inf (see the module docstring)."""
    if len(text) > 330:
        return -math.inf if text.startswith("-") else math.inf
    value = int(text)
    return value if -_FLOAT_MAX <= value <= _FLOAT_MAX else (math.inf if value > 0 else -math.inf)


def loads_json(raw: bytes | str, file: str | Path) -> Any:
    """Parse JSON text read from ``file`` (named in errors)."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    depth, digits = _scan_json(data)
    if depth > MAX_DEPTH:
        raise InputFileError(file, f"JSON nested {depth} levels deep; at most {MAX_DEPTH} levels are accepted")
    hook = {"parse_int": _int_or_inf} if digits > 300 else {}  # only then can an integer pass the float range
    try:
        return json.loads(data.decode("utf-8"), **hook)
    except UnicodeDecodeError as exc:
        raise InputFileError(file, f"cannot read: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InputFileError(file, f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except (RecursionError, ValueError) as exc:  # text the nesting scan misjudged; Python's integer digit limit
        raise InputFileError(file, f"malformed JSON ({type(exc).__name__}: {exc})") from None


def load_json(path: str | Path) -> Any:
    """Read and parse the JSON file ``path``; InputFileError (one line naming it) for any failure."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputFileError(path, "file does not exist") from None
    except OSError as exc:
        raise InputFileError(path, f"cannot read: {exc.strerror or exc}") from None
    return loads_json(raw, path)


def _yaml_depth(doc: Any) -> int:
    """Nesting depth of parsed YAML; aliases share nodes, so heights are memoised per node (no blow-up)."""
    heights: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(doc, False)]
    while stack:
        node, expanded = stack.pop()
        if not isinstance(node, (dict, list)) or (id(node) in heights and not expanded):
            continue
        children = [c for c in (list(node.keys()) + list(node.values()) if isinstance(node, dict) else node)
                    if isinstance(c, (dict, list))]
        if expanded:
            heights[id(node)] = 1 + max((heights.get(id(c), 0) for c in children), default=0)
            continue
        heights.setdefault(id(node), 0)  # a node reached again through a cycle counts as a leaf
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in heights)
    return heights.get(id(doc), 0)


def loads_yaml(text: str, file: str | Path) -> Any:
    """``yaml.safe_load`` of ``text`` read from ``file``, with the same one-line errors and nesting bound."""
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputFileError(file, f"malformed YAML{where}: {problem}") from None
    except RecursionError:
        raise InputFileError(file, f"YAML nested too deep; at most {MAX_DEPTH} levels are accepted") from None
    depth = _yaml_depth(doc)
    if depth > MAX_DEPTH:
        raise InputFileError(file, f"YAML nested {depth} levels deep; at most {MAX_DEPTH} levels are accepted")
    return doc
