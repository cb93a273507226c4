"""Release regression of driving policies (``simrecon drive-suite``, docs/simulation.md "Drive suites").

A suite file lists scenarios (each optionally multiplied by ``vary``: values substituted into the scenario file,
every combination one case). Every case is driven by the candidate policy and, when given, the baseline policy
(``sim.drive``: the same scene, start and actors for both). A case fails when a metric of the candidate got worse
than the baseline's by more than its tolerance, or misses an absolute gate; ``summary.json``, ``junit.xml`` and
``report.html`` (metrics side by side, a bird's-eye plot of both drives) are written, each run's own folder
under ``runs/``. The output folder is built under a temporary name and renamed into place when complete.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..compose.scenario import (ScenarioError, ScenarioSpec, _pydantic_message, read_mapping, resolve,
                                validated)
from ..compose.scenes import open_scene
from ..data.outdir import check_target, naming_failures, swap_in, temp_beside
from ..data.safe_paths import name_problem
from ..data.scene_api import RenderableScene
from ..sim import SimConfig, drive
from ..sim.config import apply_settings, configure, flat_settings
from ..sim.metrics import DriveMetrics
from .drive_report import write_html
from .exporter import export
from .junit import JUnitCase, write_junit
from .perception import PerceptionMetrics, coco_map, detections_of, load_detector

Progress = Callable[[str, int, int], None]  # (label, cases done, cases in all)

# metric -> +1: higher is better, -1: lower is better, 0: a flag (True is bad)
DIRECTION = {"score": 1, "route_completion": 1, "min_ttc": 1, "collision": 0, "off_road": 0, "policy_error": 0,
             "max_long_accel": -1, "max_lat_accel": -1, "max_jerk": -1}
DEFAULT_TOLERANCES = {"score": 0.02, "route_completion": 0.02, "min_ttc": 0.25, "collision": 0, "off_road": 0,
                      "policy_error": 0}
PERCEPTION = {"map": 1, "map50": 1}  # perception entries' metrics: COCO box AP, higher is better
PERCEPTION_TOLERANCES = {"map": 0.02, "map50": 0.02}
Number = Union[bool, float, None]


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    scenario: str
    name: Optional[str] = None
    vary: dict[str, list[Any]] = {}  # scenario key path (actors[0].time_offset) -> values
    tolerances: dict[str, Optional[float]] = {}
    gates: dict[str, Number] = {}


class PerceptionEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    scenario: str
    name: Optional[str] = None
    tolerances: dict[str, Optional[float]] = {}
    gates: dict[str, Optional[float]] = {}


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: Optional[str] = None
    scene: Optional[str] = None  # replaces every scenario's scene
    set: dict[str, Any] = {}  # simulation settings (simrecon drive --set) for every run
    tolerances: dict[str, Optional[float]] = {}
    gates: dict[str, Number] = {}
    scenarios: list[Entry] = []
    perception: list[PerceptionEntry] = []  # open-loop: a detector on the composed frames (export/perception.py)


@dataclass
class Case:
    """One drive of the suite (or, ``kind`` perception, one detector comparison): a scenario file with its
    variation's values."""

    name: str
    file: Path
    values: dict[str, Any]  # the variation: key path -> value
    raw: dict  # the scenario's mapping, varied
    tolerances: dict[str, Optional[float]]
    gates: dict[str, Number]
    kind: str = "drive"


@dataclass
class Regression:
    metric: str
    candidate: Any
    baseline: Any  # None against a gate
    limit: Any  # the tolerance, or the gate
    message: str


@dataclass
class CaseResult:
    name: str
    scenario: str
    values: dict[str, Any]
    seconds: float = 0.0
    candidate: DriveMetrics | PerceptionMetrics | None = None
    baseline: DriveMetrics | PerceptionMetrics | None = None
    kind: str = "drive"  # or "perception"
    regressions: list[Regression] = field(default_factory=list)
    error: str | None = None
    runs: dict[str, str] = field(default_factory=dict)  # who -> run folder, relative to the suite's output

    @property
    def passed(self) -> bool:
        return self.error is None and not self.regressions


@dataclass
class SuiteResult:
    suite: str
    passed: bool
    cases: list[CaseResult]
    out: Path
    candidate: str | None  # policy specs
    baseline: str | None
    detector: str | None = None  # detector specs (perception entries)
    baseline_detector: str | None = None


def _check_limits(file: Path, where: str, limits: dict, gates: bool, metrics: dict = DIRECTION) -> None:
    for metric, value in limits.items():
        if metric not in metrics:
            raise ScenarioError(file, f"{where}.{metric}", f"unknown metric; choose from {', '.join(metrics)}")
        if metrics[metric] == 0 and gates and value is not None and not isinstance(value, bool):
            raise ScenarioError(file, f"{where}.{metric}", "a flag's gate is true (allowed) or false (not allowed)")
        if metrics[metric] != 0 and value is not None and (isinstance(value, bool) or not
                                                              (isinstance(value, (int, float)) and value >= 0)):
            raise ScenarioError(file, f"{where}.{metric}", f"expected a number >= 0 or null, got {value!r}")


def load_suite(path: Path) -> Suite:
    """The suite file at ``path``, checked: one-line ScenarioError naming the field otherwise."""
    suite = validated(path, Suite, read_mapping(path, "suite file", "a mapping with a scenarios list"))
    for where, limits, gates in [("tolerances", suite.tolerances, False), ("gates", suite.gates, True)] + [
            (f"scenarios[{i}].{k}", getattr(e, k), k == "gates") for i, e in enumerate(suite.scenarios)
            for k in ("tolerances", "gates")]:
        _check_limits(path, where, limits, gates)
    for i, e in enumerate(suite.perception):
        for k in ("tolerances", "gates"):
            _check_limits(path, f"perception[{i}].{k}", getattr(e, k), k == "gates", PERCEPTION)
    for i, e in enumerate(suite.scenarios):
        if any(not values for values in e.vary.values()):
            raise ScenarioError(path, f"scenarios[{i}].vary", "every key needs a non-empty list of values")
    if not suite.scenarios and not suite.perception:
        raise ScenarioError(path, "scenarios", "the suite has no scenario (scenarios: or perception:)")
    return suite


_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def _path_parts(key: str) -> list[Union[str, int]] | None:
    """``actors[0].trajectory[1].t`` -> ['actors', 0, 'trajectory', 1, 't']; None if malformed."""
    parts: list[Union[str, int]] = []
    for chunk in key.split("."):
        pos, found = 0, []
        for m in _KEY.finditer(chunk):
            if m.start() != pos:
                return None
            found.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
            pos = m.end()
        if pos != len(chunk) or not found or not isinstance(found[0], str):
            return None
        parts += found
    return parts


def _substitute(raw: dict, key: str, value: Any) -> str | None:
    """Set ``key`` in ``raw`` to ``value`` (its parent must exist); the problem, or None."""
    parts = _path_parts(key)
    if parts is None:
        return "expected a key path such as actors[0].time_offset"
    node: Any = raw
    for part in parts[:-1]:
        ok = (isinstance(part, str) and isinstance(node, dict) and part in node) or \
             (isinstance(part, int) and isinstance(node, list) and part < len(node))
        if not ok:
            return f"the scenario has no item {part} there" if isinstance(part, int) else \
                f"the scenario has no {part!r} there"
        node = node[part]
    last = parts[-1]
    if isinstance(last, int) and not (isinstance(node, list) and last < len(node)):
        return f"the scenario has no item {last} there"
    if isinstance(last, str) and not isinstance(node, dict):
        return f"the scenario has no mapping for {last!r} there"
    node[last] = copy.deepcopy(value)
    return None


def _read_raw(file: Path) -> dict:
    return read_mapping(file, "scenario file", "a mapping of scenario keys")


def expand(suite: Suite, path: Path) -> list[Case]:
    """Every case of the suite: each scenario times every combination of its ``vary`` values."""
    cases, names = [], set()
    for i, e in enumerate(suite.scenarios):
        file = (path.parent / e.scenario).resolve()
        raw = _read_raw(file)
        keys = list(e.vary)
        combos = list(itertools.product(*(e.vary[k] for k in keys))) if keys else [()]
        base = e.name or Path(e.scenario).stem
        for n, combo in enumerate(combos):
            varied = copy.deepcopy(raw)
            for key, value in zip(keys, combo):
                problem = _substitute(varied, key, value)
                if problem:
                    raise ScenarioError(path, f"scenarios[{i}].vary.{key}", problem)
            name = base if len(combos) == 1 else f"{base}-{n + 1}"
            problem = name_problem(name) or (f"two cases named {name!r}: give a name" if name in names else None)
            if problem:
                raise ScenarioError(path, f"scenarios[{i}].name", problem)
            names.add(name)
            cases.append(Case(name, file, dict(zip(keys, combo)), varied, {**DEFAULT_TOLERANCES, **suite.tolerances,
                                                                           **e.tolerances}, {**suite.gates, **e.gates}))
    for i, e in enumerate(suite.perception):
        file = (path.parent / e.scenario).resolve()
        name = e.name or f"perception-{Path(e.scenario).stem}"
        problem = name_problem(name) or (f"two cases named {name!r}: give a name" if name in names else None)
        if problem:
            raise ScenarioError(path, f"perception[{i}].name", problem)
        names.add(name)
        cases.append(Case(name, file, {}, _read_raw(file), {**PERCEPTION_TOLERANCES, **e.tolerances}, dict(e.gates),
                          "perception"))
    return cases


def _value(m: DriveMetrics, metric: str, horizon: float) -> Any:
    v = getattr(m, metric)
    if metric == "min_ttc":
        return horizon if v is None else v  # no conflict within the horizon: as good as the horizon
    if metric == "policy_error":
        return v is not None
    return v


def compare(cand, base, tolerances: dict, gates: dict, horizon: float,
            metrics: dict = DIRECTION) -> list[Regression]:
    """The candidate's regressions: against the baseline beyond ``tolerances``, and against absolute ``gates``
    (flags: false = must not happen; numbers: the least, or for lower-is-better metrics the most, allowed).
    ``metrics``: name -> direction of the metrics compared (drive metrics, or ``PERCEPTION``)."""
    out = []
    for metric, direction in metrics.items():
        c = _value(cand, metric, horizon)
        tol = tolerances.get(metric)
        if base is not None and tol is not None:
            b = _value(base, metric, horizon)
            if direction == 0 and c and not b:
                out.append(Regression(metric, c, b, tol, f"{metric}: the baseline had none"))
            elif direction != 0 and direction * (b - c) > tol + 1e-12:
                out.append(Regression(metric, c, b, tol, f"{metric}: {c:.4g}, baseline {b:.4g} (tolerance {tol:g})"))
        gate = gates.get(metric)
        if gate is None:
            continue
        if direction == 0 and c and gate is False:
            out.append(Regression(metric, c, None, gate, f"{metric}: not allowed"))
        elif direction != 0 and direction * (c - gate) < -1e-12:
            side = "at least" if direction > 0 else "at most"
            out.append(Regression(metric, c, None, gate, f"{metric}: {c:.4g}, must be {side} {gate:g}"))
    return out


@dataclass
class _Runner:
    """What every case of one suite run shares: the settings, the policies, the scenes (opened once)."""

    path: Path
    suite: Suite
    cfg: SimConfig | None  # the base settings (the scenario's drive: section and ``settings`` go on top)
    settings: list[tuple[str, Any]]  # the suite's set:, then the command line's --set
    policies: dict[str, str]  # who (candidate, baseline) -> policy spec
    tmp: Path
    renderer: str
    detectors: dict[str, str] = field(default_factory=dict)  # who -> detector spec (perception entries)
    scenes: dict[Path, RenderableScene] = field(default_factory=dict)

    def scene(self, p: Path, file: Path) -> RenderableScene:
        if p not in self.scenes:
            try:
                self.scenes[p] = open_scene(p, self.renderer)
            except (ValueError, FileNotFoundError) as exc:
                raise ScenarioError(file, "scene", str(exc)) from None
        return self.scenes[p]

    def plan(self, case: Case):
        try:
            spec = ScenarioSpec.model_validate(case.raw)
        except ValidationError as exc:
            raise _pydantic_message(case.file, exc) from None
        if self.suite.scene is not None:
            scene_path = (self.path.parent / self.suite.scene).resolve()
        else:
            scene_path = Path(spec.scene) if Path(spec.scene).is_absolute() else (case.file.parent / spec.scene).resolve()
        return resolve(spec, self.scene(scene_path, case.file), case.file, scene_path)

    def run(self, case: Case) -> CaseResult:
        res = CaseResult(case.name, str(case.file), case.values, kind=case.kind)
        start = time.perf_counter()
        try:
            if case.kind == "perception":
                self.perceive(case, res)
            else:
                self.drive_case(case, res)
        except (ScenarioError, FileNotFoundError, FileExistsError, ValueError) as exc:
            res.error = (str(exc).splitlines() or [type(exc).__name__])[0]
        res.seconds = time.perf_counter() - start
        return res

    def perceive(self, case: Case, res: CaseResult) -> None:
        """Compose the scenario once as a COCO dataset (frames/NAME), score every detector on it."""
        rel = f"frames/{case.name}"
        export(self.plan(case), "coco", self.tmp / rel)
        metrics = {who: coco_map(self.tmp / rel, detections_of(load_detector(spec), self.tmp / rel))
                   for who, spec in self.detectors.items()}
        res.runs["frames"] = rel
        res.candidate, res.baseline = metrics["candidate"], metrics.get("baseline")
        res.regressions = compare(res.candidate, res.baseline, case.tolerances, case.gates, 0.0, PERCEPTION)

    def drive_case(self, case: Case, res: CaseResult) -> None:
        """Drive the case with every policy (runs/WHO/NAME) and compare."""
        plan = self.plan(case)
        horizon = configure(self.cfg, plan, self.settings).world.ttc_horizon
        metrics = {}
        for who, spec in self.policies.items():
            rel = f"runs/{who}/{case.name}"
            metrics[who] = drive(plan, spec, self.tmp / rel, self.cfg, renderer=self.renderer,
                                 settings=self.settings).metrics
            res.runs[who] = rel
        res.candidate, res.baseline = metrics["candidate"], metrics.get("baseline")
        res.regressions = compare(res.candidate, res.baseline, case.tolerances, case.gates, horizon)


def _check_who(suite: Suite, path: Path, policy: str | None, baseline: str | None, detector: str | None,
               baseline_detector: str | None) -> None:
    """Each kind of entry has what it is run with; a one-line ValueError otherwise."""
    if suite.scenarios and not policy:
        raise ValueError(f"{path}: its scenarios need --policy")
    if suite.perception and not detector:
        raise ValueError(f"{path}: its perception entries need --detector")
    if baseline_detector and not detector:
        raise ValueError("--baseline-detector needs --detector")
    if baseline and not policy:
        raise ValueError("--baseline needs --policy")
    for spec in (detector, baseline_detector):
        if spec:
            load_detector(spec)  # a bad spec is refused before anything runs


def drive_suite(path: str | Path, candidate: str | None, out: str | Path, baseline: str | None = None,
                cfg: SimConfig | None = None, settings: list[tuple[str, Any]] | None = None, force: bool = False,
                progress: Progress | None = None, renderer: str = "fast", detector: str | None = None,
                baseline_detector: str | None = None) -> SuiteResult:
    """Run the suite at ``path`` for ``candidate`` (and ``baseline``) policy specs into ``out``; see the module
    docstring. Each drive's settings: ``cfg``, the scenario's ``drive:``, the suite's ``set:``, ``settings``.
    Perception entries are scored with ``detector`` (and ``baseline_detector``).
    Bad input (suite, scenario files, settings, output folder) is a one-line error before anything is written;
    a case that cannot run is that case's error, and the others go on."""
    path, out = Path(path), Path(out)
    suite = load_suite(path)
    cases = expand(suite, path)
    apply_settings(copy.deepcopy(cfg) if cfg else SimConfig(), suite.set, f"{path}: set")
    settings = flat_settings(suite.set) + list(settings or [])
    check_target(out, force)
    _check_who(suite, path, candidate, baseline, detector, baseline_detector)
    policies = {"candidate": candidate, **({"baseline": baseline} if baseline else {})}
    detectors = {"candidate": detector, **({"baseline": baseline_detector} if baseline_detector else {})}
    tmp = temp_beside(out)
    try:
        with naming_failures(out):
            runner = _Runner(path, suite, cfg, settings, policies, tmp, renderer, detectors)
            results = []
            for k, case in enumerate(cases):
                if progress:
                    progress(case.name, k, len(cases))
                results.append(runner.run(case))
            result = SuiteResult(suite.name or path.stem, all(r.passed for r in results), results, out, candidate,
                                 baseline, detector, baseline_detector)
            _write(result, tmp)
            swap_in(tmp, out, "drive-suite")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def _json_metrics(m: DriveMetrics | None) -> dict | None:
    return None if m is None else m.to_json()


def summary(result: SuiteResult) -> dict:
    clean = lambda v: None if isinstance(v, float) and not math.isfinite(v) else v  # noqa: E731
    return {"suite": result.suite, "passed": result.passed, "candidate": result.candidate,
            "baseline": result.baseline, "detector": result.detector, "baseline_detector": result.baseline_detector,
            "cases": [{"name": c.name, "kind": c.kind, "scenario": c.scenario, "variation": c.values, "passed": c.passed,
                       "seconds": round(c.seconds, 3), "error": c.error, "runs": c.runs,
                       "regressions": [{k: clean(v) for k, v in vars(r).items()} for r in c.regressions],
                       "candidate": _json_metrics(c.candidate), "baseline": _json_metrics(c.baseline)}
                      for c in result.cases]}


def _write(result: SuiteResult, root: Path) -> None:
    (root / "summary.json").write_text(json.dumps(summary(result), indent=1, default=str) + "\n")
    write_junit(root / "junit.xml", "simrecon drive-suite", result.suite,
                [JUnitCase(c.name, c.seconds, [r.message for r in c.regressions], c.error,
                           {"variation": c.values, "candidate": _json_metrics(c.candidate),
                            "baseline": _json_metrics(c.baseline)}) for c in result.cases])
    write_html(root / "report.html", result, root)
