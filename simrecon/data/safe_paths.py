"""Names and relative paths read from files, checked before they become part of an output path.

A camera name, a suite case name or a ``file_path`` from a log, a scenario or a poses file is data from
whoever wrote that file. Joined to an output folder unchecked, ``../../x`` or ``/etc/x`` writes outside
it. Every such string goes through ``safe_name`` (one path component) or ``safe_join`` (a relative path
that stays inside its root) first.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

MAX_NAME_BYTES = 255  # the longest file name common file systems (ext4, APFS, NTFS) take


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be one component of a path, or None when it can."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty string"
    if name in (".", ".."):
        return f"{name!r} is not a name"
    if "/" in name or "\\" in name:
        return f"{name!r} must not contain '/' or '\\' (it becomes a folder or file name)"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return f"{name!r} must not contain control characters"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"{name[:40]!r}... is longer than {MAX_NAME_BYTES} bytes (it becomes a folder or file name)"
    return None


def safe_name(name: object, what: str) -> str:
    """``name`` if it is a plain path component, else ValueError ``what: why``."""
    problem = name_problem(name)
    if problem:
        raise ValueError(f"{what}: {problem}")
    return str(name)


def relative_problem(rel: object) -> str | None:
    """Why ``rel`` is not a relative path that stays inside the folder it is joined to, or None."""
    if not isinstance(rel, str) or not rel:
        return "must be a non-empty relative path"
    if any(ord(c) < 32 or ord(c) == 127 for c in rel):
        return f"{rel!r} must not contain control characters"
    p = PurePosixPath(rel.replace("\\", "/"))
    if p.is_absolute() or (len(rel) > 1 and rel[1] == ":"):
        return f"{rel!r} is absolute; expected a path relative to its folder"
    if ".." in p.parts:
        return f"{rel!r} climbs out of its folder with '..'"
    return None


def safe_join(root: str | Path, *parts: str, what: str = "path") -> Path:
    """``root / part / ...`` after checking every part is a relative path inside ``root``."""
    out = Path(root)
    for part in parts:
        problem = relative_problem(part)
        if problem:
            raise ValueError(f"{what}: {problem}")
        out = out / part
    return out
