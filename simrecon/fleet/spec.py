"""Fleet spec files (docs/fleet.md): which drive logs to take through which stages, with what resources.

``load_spec(path)`` reads the YAML with ``yaml.safe_load`` (through ``data.safe_load``) and checks every field;
each refusal is one ``InputFileError`` line ``FILE: field.path: what is wrong``. Paths in the spec (logs, globs,
scenarios, suites, golden folders) are relative to the spec file's folder and are resolved here, so the runner
and its workers only see absolute paths.
"""

from __future__ import annotations

import glob
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from ..data.readers import known_formats
from ..data.safe_load import InputFileError, loads_yaml
from ..data.safe_paths import name_problem

MAX_LOGS = 100_000  # logs one spec may name (globs expanded)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class StageOptions(_Strict):
    """Keys every stage takes: its name and what one task of it reserves."""

    name: Optional[str] = None  # unique in the spec; default: the stage's kind
    cpus: Optional[float] = Field(None, gt=0)  # CPU cores reserved by one task (default: defaults.cpus)
    gpus: Optional[float] = Field(None, ge=0)  # GPUs reserved by one task; fractions share a GPU
    memory_gb: Optional[float] = Field(None, ge=0)  # GiB of RAM reserved by one task (0: no reservation)
    retries: Optional[int] = Field(None, ge=0, le=20)  # extra attempts after a failure that is not bad input


class ConvertOptions(StageOptions):
    cameras: Optional[list[str]] = None  # only these cameras
    frames: Optional[str] = None  # START:END, a Python slice of the frames
    skip_missing: bool = False  # skip frames whose image is missing


class ValidateOptions(StageOptions):
    quick: bool = False  # check images by their headers only (no full decode)
    skip_missing: bool = False


class ReconstructOptions(StageOptions):
    preset: Literal["fast", "default", "quality", "tiny"] = "fast"
    steps: Optional[int] = Field(None, ge=1)  # stop after this many steps
    minutes: Optional[float] = Field(None, gt=0)  # stop after this many minutes
    holdout: Optional[str] = None  # every:N, none, or a file of image paths
    device: Literal["auto", "cpu", "cuda"] = "auto"
    set: list[str] = []  # KEY=VALUE training settings (simrecon config lists them)


class EvalOptions(StageOptions):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    renderer: Literal["fast", "reference"] = "fast"


class ComposeOptions(StageOptions):
    scenarios: list[str] = Field(min_length=1)  # scenario files; each renders on this log's scene
    renderer: Literal["fast", "reference"] = "fast"


class ExportOptions(ComposeOptions):
    format: Literal["simrecon", "kitti", "coco", "nerfstudio"] = "simrecon"


class RegressOptions(StageOptions):
    suite: str  # a regression suite; its scenarios render on this log's scene
    golden: Optional[str] = None  # folder with one golden folder per log (default: OUT/<log>/golden-renders)
    update_golden: bool = False  # write the renders as the new golden set instead of comparing
    renderer: Literal["fast", "reference"] = "fast"


class DriveOptions(StageOptions):
    scenarios: list[str] = []  # scenario files to drive; none: the log's scene as logged
    policy: str = "lane-follow"  # replay, lane-follow, idle, or module:attr
    duration: Optional[float] = Field(None, gt=0)  # s, episode length (default: the scenario's span + 2 s)
    set: list[str] = []  # KEY=VALUE simulation settings (docs/simulation.md)
    renderer: Literal["fast", "reference"] = "fast"


class DriveSuiteOptions(StageOptions):
    suite: str  # a drive suite (docs/simulation.md); its scenarios run on this log's scene
    policy: Optional[str] = None  # the candidate policy (needed when the suite has scenarios)
    baseline: Optional[str] = None  # the release to compare with
    detector: Optional[str] = None  # the candidate detector (perception entries)
    baseline_detector: Optional[str] = None
    set: list[str] = []  # KEY=VALUE simulation settings for every drive
    renderer: Literal["fast", "reference"] = "fast"


class MeshOptions(StageOptions):
    """As ``simrecon mesh`` (docs/meshes.md), on the log's reconstruction."""

    actors: Optional[list[str]] = None  # actor ids to mesh; None: every actor with a field; []: none
    background: bool = Field(False, validate_default=True)  # also mesh the background inside ``region``
    region: Optional[str] = Field(None, validate_default=True)  # xmin,ymin,zmin,xmax,ymax,zmax, world metres
    resolution: int = Field(128, ge=8, le=1024)  # marching-cubes cells along an actor box's longest side
    background_resolution: Optional[int] = Field(None, ge=8, le=1024)  # cells for the background (default
    # max(resolution, 256))
    format: Literal["glb", "ply", "obj"] = "glb"
    opacity: float = Field(0.5, gt=0, lt=1)  # 0..1: the surface is where one sample step is this opaque
    faces: int = Field(20000, ge=100)  # decimate each mesh to about this many faces
    clip: Literal["box", "ground", "none"] = "box"  # where actor density counts (simrecon mesh --clip)
    symmetric: Optional[bool] = None  # mirror actors left/right; None: vehicles only
    prior: Literal["auto", "off"] = "auto"  # barely seen actors borrow the shape of their class's best-seen one
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @field_validator("background")
    @classmethod
    def _something(cls, value: bool, info: ValidationInfo) -> bool:
        if not value and info.data.get("actors") == []:
            raise ValueError("expected true when actors is empty (else there is nothing to mesh)")
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: Optional[str], info: ValidationInfo) -> Optional[str]:
        background = info.data.get("background", False)
        if value is None:
            if background:
                raise ValueError("expected xmin,ymin,zmin,xmax,ymax,zmax (world metres) with background: true")
            return value
        if not background:
            raise ValueError("the region bounds the background mesh: add background: true")
        from ..mesh.scene_mesh import parse_region

        try:
            parse_region(value)
        except ValueError as exc:  # its message names the CLI's --region and repeats the input
            raise ValueError(str(exc).removeprefix("--region: ").rpartition(", got ")[0] or str(exc)) from None
        return value


class LidarOptions(StageOptions):
    """Render the log's sweeps at their logged poses and times; compare them with the recorded ones."""

    sweeps: Optional[int] = Field(None, ge=1)  # render at most this many sweeps, evenly spread (None: all)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    renderer: Literal["fast", "reference"] = "fast"


OPTIONS: dict[str, type[StageOptions]] = {
    "convert": ConvertOptions, "validate": ValidateOptions, "reconstruct": ReconstructOptions,
    "eval": EvalOptions, "compose": ComposeOptions, "export": ExportOptions, "regress": RegressOptions,
    "drive": DriveOptions, "drive-suite": DriveSuiteOptions, "mesh": MeshOptions, "lidar": LidarOptions,
}
NEEDS_SCENE = ("eval", "mesh")  # stages that need a reconstruction earlier in the list
_PATH_LISTS = ("scenarios",)
_PATHS = ("suite", "golden", "holdout")


@dataclass(frozen=True)
class Resources:
    cpus: float  # CPU cores reserved by one task of the stage
    gpus: float  # GPUs reserved by one task (a fraction shares one GPU)
    memory_gb: float  # GiB of RAM reserved by one task (0: none reserved)


@dataclass(frozen=True)
class StageSpec:
    name: str  # unique in the spec: the per-log state and the manifest key stages by it
    kind: str  # one of OPTIONS
    options: StageOptions  # the kind's options, paths resolved
    resources: Resources
    retries: int  # extra attempts after a failure that is not bad input

    def key(self) -> str:
        """What the stage's result depends on in the spec: a rerun redoes a stage whose key changed."""
        opts = self.options.model_dump(exclude={"name", "cpus", "gpus", "memory_gb", "retries"})
        text = json.dumps({"kind": self.kind, "options": opts}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class LogSpec:
    source: Path  # absolute: a drive log, or a raw dataset when ``convert`` is set
    convert: Optional[str]  # the dataset format of ``source`` (simrecon convert), or None for a drive log
    name: Optional[str]  # the log's folder name in OUT (default: the source folder's name, made unique)


@dataclass(frozen=True)
class FleetSpec:
    file: Path
    name: str
    logs: list[LogSpec]
    stages: list[StageSpec]  # in order; convert is not among them (see ``convert``)
    convert: StageSpec  # the stage that converts logs that name a ``convert`` format

    def stages_for(self, log: LogSpec) -> list[StageSpec]:
        return ([self.convert] if log.convert else []) + self.stages


def _error(file: Path, where: str, message: str) -> InputFileError:
    return InputFileError(file, f"{where}: {message}" if where else message)


def _loc(prefix: str, loc: tuple) -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _options(file: Path, where: str, model: type[StageOptions], raw: Any, what: str) -> StageOptions:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _error(file, where, f"expected a mapping of {what}, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = _loc(where, tuple(err["loc"]))
        if err["type"] == "extra_forbidden":
            known = ", ".join(model.model_fields)
            return_msg = f"unknown key (known: {known})"
        elif err["type"] == "missing":
            return_msg = "missing required key"
        else:
            return_msg = err["msg"].removeprefix("Value error, ")
            if "input" in err and not isinstance(err["input"], (dict, list)):
                return_msg += f", got {err['input']!r}"
        raise _error(file, loc, return_msg) from None


def _resolve_paths(file: Path, where: str, opts: StageOptions) -> StageOptions:
    """The options with every path made absolute (relative to the spec's folder) and checked to exist."""
    base, changes = file.parent, {}
    for key in _PATH_LISTS + _PATHS:
        value = getattr(opts, key, None)
        if value is None or (key == "holdout" and (value == "none" or value.startswith("every:"))):
            continue
        items = value if isinstance(value, list) else [value]
        resolved = []
        for i, item in enumerate(items):
            path = (base / item).resolve()
            if key != "golden" and not path.exists():
                at = f"{where}.{key}[{i}]" if isinstance(value, list) else f"{where}.{key}"
                raise _error(file, at, f"{item}: no such file")
            resolved.append(str(path))
        changes[key] = resolved if isinstance(value, list) else resolved[0]
    return opts.model_copy(update=changes)


def _stage(file: Path, where: str, entry: Any, defaults: StageOptions) -> StageSpec:
    if isinstance(entry, str):
        kind, raw = entry, {}
    elif isinstance(entry, dict) and len(entry) == 1:
        kind, raw = next(iter(entry.items()))
    else:
        raise _error(file, where, "expected a stage name or {stage: {options}}, e.g. {reconstruct: {preset: tiny}}")
    if kind not in OPTIONS:
        raise _error(file, where, f"unknown stage {kind!r} (known: {', '.join(OPTIONS)})")
    opts = _resolve_paths(file, where, _options(file, where, OPTIONS[kind], raw, f"{kind} options"))
    name = opts.name or kind
    problem = name_problem(name)
    if problem:
        raise _error(file, f"{where}.name", problem)
    res = Resources(cpus=_pick(opts.cpus, defaults.cpus, 1.0), gpus=_pick(opts.gpus, defaults.gpus, 0.0),
                    memory_gb=_pick(opts.memory_gb, defaults.memory_gb, 0.0))
    return StageSpec(name, kind, opts, res, int(_pick(opts.retries, defaults.retries, 1)))


def _pick(value: Any, default: Any, fallback: Any) -> Any:
    return value if value is not None else (default if default is not None else fallback)


def _log_entries(file: Path, raw: Any) -> list[LogSpec]:
    if not isinstance(raw, list) or not raw:
        raise _error(file, "logs", "expected a non-empty list of log folders, globs or {path, convert, name}")
    logs: list[LogSpec] = []
    for i, entry in enumerate(raw):
        where = f"logs[{i}]"
        if isinstance(entry, str):
            entry = {"path": entry}
        if not isinstance(entry, dict):
            raise _error(file, where, f"expected a path or a mapping, got {type(entry).__name__}")
        unknown = sorted(set(entry) - {"path", "convert", "name"})
        if unknown:
            raise _error(file, f"{where}.{unknown[0]}", "unknown key (known: path, convert, name)")
        path, fmt, name = entry.get("path"), entry.get("convert"), entry.get("name")
        if not isinstance(path, str) or not path:
            raise _error(file, f"{where}.path", "expected a path or glob")
        if fmt is not None and fmt not in known_formats():
            raise _error(file, f"{where}.convert", f"unknown format {fmt!r} (known: {', '.join(known_formats())})")
        if name is not None and name_problem(name):
            raise _error(file, f"{where}.name", name_problem(name))
        matches = sorted(glob.glob(str(file.parent / path))) if glob.has_magic(path) else [str(file.parent / path)]
        matches = [m for m in matches if Path(m).exists()]
        if not matches:
            raise _error(file, f"{where}.path", f"{path}: no such file or folder" if not glob.has_magic(path)
                         else f"{path}: the glob matches nothing")
        if name is not None and len(matches) > 1:
            raise _error(file, f"{where}.name", f"one name for a glob that matches {len(matches)} logs")
        seen = {(log.source, log.convert) for log in logs}  # a log matched twice (a glob and its path) runs once
        logs += [LogSpec(Path(m).resolve(), fmt, name) for m in matches if (Path(m).resolve(), fmt) not in seen]
        if len(logs) > MAX_LOGS:
            raise _error(file, "logs", f"more than {MAX_LOGS} logs")
    return logs


def _check_order(file: Path, stages: list[StageSpec]) -> None:
    seen: set[str] = set()
    for i, s in enumerate(stages):
        if s.name in seen:
            raise _error(file, f"stages[{i}]", f"a second stage named {s.name!r} (give one another name: ...)")
        if s.kind == "convert":
            raise _error(file, f"stages[{i}]", "convert runs first for the logs that name a format (logs[].convert);"
                                               " set its options under convert: at the top level")
        if s.kind in NEEDS_SCENE and not any(p.kind == "reconstruct" for p in stages[:i]):
            raise _error(file, f"stages[{i}]", f"{s.kind} needs a reconstruct stage before it")
        seen.add(s.name)


def parse_spec(doc: Any, file: Path) -> FleetSpec:
    """The spec of the parsed YAML ``doc`` read from ``file`` (named in errors)."""
    file = Path(file).absolute()
    if not isinstance(doc, dict):
        raise _error(file, "", f"expected a mapping with logs: and stages:, got {type(doc).__name__}")
    unknown = sorted(set(doc) - {"version", "name", "logs", "stages", "defaults", "convert"})
    if unknown:
        raise _error(file, unknown[0], "unknown key (known: version, name, logs, stages, defaults, convert)")
    if doc.get("version", 1) != 1:
        raise _error(file, "version", f"expected 1, got {doc.get('version')!r}")
    name = doc.get("name", file.stem)
    if not isinstance(name, str) or not name:
        raise _error(file, "name", f"expected a non-empty string, got {name!r}")
    defaults = _options(file, "defaults", StageOptions, doc.get("defaults"), "cpus, gpus, memory_gb, retries")
    if defaults.name is not None:
        raise _error(file, "defaults.name", "only cpus, gpus, memory_gb and retries have defaults")
    raw_stages = doc.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise _error(file, "stages", "expected a non-empty list, e.g. [validate, {reconstruct: {preset: tiny}}, eval]")
    stages = [_stage(file, f"stages[{i}]", e, defaults) for i, e in enumerate(raw_stages)]
    _check_order(file, stages)
    convert = _stage(file, "convert", {"convert": doc.get("convert")}, defaults)
    return FleetSpec(file, name, _log_entries(file, doc.get("logs")), stages, convert)


def load_spec(path: str | Path) -> FleetSpec:
    """Read and check the fleet spec ``path``; every problem is one InputFileError line naming file and field."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError(file, "no such fleet spec") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(file, f"cannot read: {exc}") from None
    return parse_spec(loads_yaml(text, file), file)
