"""GPU check: build, test, benchmark, train and render on one CUDA GPU in about 8 minutes; one table last.

On a machine with a CUDA GPU (an H100 or H200 lent through the device tool) it runs six stages, each in its own
process with its own timeout; a stage that fails or times out is recorded in the table and the run goes on:

1. ``build``: the CUDA hash-grid extension (``simrecon.encoding._build.load_extension("cuda")``: nvcc, ninja);
   its log also holds ``nvidia-smi`` and ``nvcc --version``;
2. ``parity``: ``tests/test_encoding.py`` and ``tests/test_encoding_many.py`` with ``-k cuda``: forward, table
   and positional gradients of the ``cuda`` backend against the reference, one table and many, within the
   tolerances stated next to each comparison in those tests;
3. ``hashgrid``: ``benchmarks/hashgrid.py --device cuda`` at 2^18, 2^20 and 2^22 points (16 levels x 2
   features, a 2^19 table) against the torch reference on the same GPU;
4. ``street``: the default synthetic street (``SynthConfig()``, without its ground-truth sets), generated on
   the CPU in the background while the first stages run;
5. ``train``: ``benchmarks/reconstruct.py --preset default --device cuda --marks 1,2,5 --resume-marks``: one run
   extended to each mark, with the held-out PSNR and the training rays/s at each. A resumed mark's learning
   rate rises again at the resume, so marks after the first are close to, not exactly, a user's run of that
   length (``--fresh-marks``: a run per mark, more time). Marks after the 2-minute target that would end past
   the time budget (``--budget-s``, default 500 s) are skipped and shown so;
6. ``render``: ``benchmarks/render.py``: frames/s of the held-out frames (fast renderer and reference) at the
   log's resolution and at 1920x1080.

Targets, judged on the GPU: every parity test passes; hash-grid forward+backward >= 1e9 points/s at 2^20 and
>= 50x the torch reference; >= 35 dB held out after 2 minutes of training.

Writes under ``--out`` (default ``$OUT``, else ``./gpu-check-out``) seven files, within what the device tool
brings back: build.log, parity.log, hashgrid.log, train.log (the street's generation first), render.log (each
stage's full output, named ``*.log.part`` until the run ends), results.json (every figure; rewritten after each
stage) and summary.md (the table). Exit status 0: every stage ran and every target was met; 1: otherwise;
2: no CUDA device (one line, within seconds, nothing written) or a bad option.

``--cpu-smoke`` runs every stage on the CPU at toy sizes (the ``cpu`` kernel, a 160x96 street, the ``tiny``
preset for seconds) in well under a minute once the CPU kernel is built, so that the pipeline itself is tested
without a GPU (``tests/test_gpu_check.py``); targets are not judged there.

    bash benchmarks/gpu_check.sh                        # on the device: its python3 (CUDA torch), PYTHONPATH=.
    bash benchmarks/gpu_check.sh --stages build,parity,hashgrid    # a shorter rerun
    .venv/bin/python benchmarks/gpu_check.py --cpu-smoke --out /tmp/gpu-check   # the pipeline, on CPU
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("build", "parity", "hashgrid", "street", "train", "render")
# Each stage's log file under --out (the street's generation goes first into the training log: 7 files in all).
LOG_FILES = {"build": "build.log", "parity": "parity.log", "hashgrid": "hashgrid.log", "street": "train.log",
             "train": "train.log", "render": "render.log"}
TARGET_POINTS_PER_S = 1e9  # hash grid forward+backward at 2^20 points (16 x 2 features, 2^19 table)
TARGET_SPEEDUP = 50.0  # ... over the torch reference on the same GPU
TARGET_PSNR_DB = 35.0  # held out, after 2 minutes of training (default preset, synthetic street)
GRACE_S = 60.0  # a stage is stopped this long after the budget at the latest (a run ends by budget + 1 min) ...
MIN_STAGE_S = 30.0  # ... but has at least this long


@dataclass(frozen=True)
class Plan:
    """What each stage runs: the GPU check's sizes, or toy sizes on the CPU (``--cpu-smoke``)."""

    smoke: bool
    device: str  # cuda | cpu
    kernel: str  # the fused backend under test: cuda | cpu
    parity_select: str  # pytest -k expression
    hash_sizes: tuple[int, ...]  # log2 of the point counts
    hash_target: int  # log2 of the point count the targets are judged at
    hash_args: tuple[str, ...]
    street: dict[str, Any]  # SynthConfig fields
    preset: str
    marks: tuple[float, ...]  # minutes
    target_minutes: float  # the mark the PSNR target is judged at (never skipped)
    resume_marks: bool
    render_sizes: tuple[str, ...]
    render_frames: int  # timed frames per size, at most ...
    render_budget_s: float  # ... and seconds per size (at least one frame)
    timeouts: dict[str, float]  # seconds per stage (train: from the budget)
    train_startup_s: float  # estimated start of the training process, before its first mark
    train_per_mark_s: float  # estimated reload, checkpoint and evaluation per mark
    render_reserve_s: float  # kept for the render stage when the training marks are chosen


def make_plan(smoke: bool, marks: tuple[float, ...] | None, fresh: bool) -> Plan:
    if smoke:
        return Plan(
            smoke=True, device="cpu", kernel="cpu", parity_select="cpu and matches_reference",
            hash_sizes=(10, 12), hash_target=12,
            hash_args=("--levels", "8", "--log2-table", "14", "--repeats", "2", "--budget", "0.5"),
            street={"seconds": 0.5, "width": 160, "height": 96, "lidar_azimuths": 512, "ground_truth": False},
            preset="tiny", marks=marks or (0.1, 0.15), target_minutes=(marks or (0.1, 0.15))[-1],
            resume_marks=not fresh, render_sizes=("log", "192x108"), render_frames=2, render_budget_s=5,
            timeouts={"build": 180, "parity": 120, "hashgrid": 60, "street": 60, "render": 60},
            train_startup_s=5, train_per_mark_s=5, render_reserve_s=10)
    return Plan(
        smoke=False, device="cuda", kernel="cuda", parity_select="cuda", hash_sizes=(18, 20, 22), hash_target=20,
        hash_args=("--repeats", "7", "--budget", "3"),
        street={"ground_truth": False}, preset="default", marks=marks or (1.0, 2.0, 5.0), target_minutes=2.0,
        resume_marks=not fresh, render_sizes=("log", "1920x1080"), render_frames=6, render_budget_s=10,
        timeouts={"build": 300, "parity": 150, "hashgrid": 180, "street": 300, "render": 120},
        train_startup_s=15, train_per_mark_s=15, render_reserve_s=30)


@dataclass
class StageResult:
    name: str
    status: str  # ok | failed | timeout | skipped
    rc: int | None = None
    seconds: float = 0.0
    stdout: str = ""
    note: str = ""


@dataclass
class Row:
    stage: str
    figure: str
    target: str = ""
    result: str = "info"  # pass | FAIL | info | skip | - (a target not judged: --cpu-smoke)


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"gpu_check: {message} (see --help)\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = _OneLineParser(prog="gpu_check", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None, help="where the logs go (default: $OUT, else ./gpu-check-out)")
    ap.add_argument("--work", type=Path, default=None,
                    help="scratch folder for the street, scenes and captured output (default: a new temporary one)")
    ap.add_argument("--cpu-smoke", action="store_true", help="every stage on the CPU at toy sizes (no GPU needed)")
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="seconds for the whole run (default 500; 300 with --cpu-smoke): training marks after the "
                         "target that would end past it are skipped")
    ap.add_argument("--marks", default=None, help="training marks in minutes (default 1,2,5; smoke: 0.1,0.15)")
    ap.add_argument("--fresh-marks", action="store_true", help="train each mark from scratch instead of resuming")
    args = ap.parse_args(argv)
    stages = [s for s in args.stages.split(",") if s]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown or not stages:
        ap.error(f"--stages: expected names from {','.join(STAGES)}, got {args.stages!r}")
    args.stages = tuple(s for s in STAGES if s in stages)
    if args.marks is not None:
        try:
            args.marks = tuple(sorted(float(m) for m in args.marks.split(",")))
        except ValueError:
            ap.error(f"--marks: expected minutes such as 1,2,5, got {args.marks!r}")
        if not args.marks or min(args.marks) <= 0:
            ap.error(f"--marks: minutes must be > 0, got {args.marks!r}")
    if args.budget_s is not None and args.budget_s <= 0:
        ap.error(f"--budget-s must be > 0, got {args.budget_s}")
    return args


def cuda_problem() -> str | None:
    """Why this process cannot use a CUDA GPU (one line), or None when it can."""
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - any import failure means: not this python
        return (f"torch is not importable by {sys.executable} ({type(exc).__name__}: {exc}); run with the python "
                f"that holds CUDA torch (PYTHON=... bash benchmarks/gpu_check.sh)")
    hint = "run on a GPU machine, or test the pipeline on CPU with --cpu-smoke"
    if torch.version.cuda is None:
        return f"no CUDA device: torch {torch.__version__} at {sys.executable} is a CPU-only build; {hint}"
    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        where = f", CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""
        return f"no CUDA device: torch {torch.__version__} (CUDA {torch.version.cuda}) sees none{where}; {hint}"
    return None


def device_meta(plan: Plan) -> dict[str, Any]:
    import platform

    import torch

    meta: dict[str, Any] = {"mode": "cpu-smoke" if plan.smoke else "gpu", "date": time.strftime("%Y-%m-%d %H:%M"),
                            "python": sys.executable, "torch": torch.__version__, "cuda": torch.version.cuda,
                            "host": platform.node(), "cpus": os.cpu_count()}
    if not plan.smoke:
        props = torch.cuda.get_device_properties(0)
        meta.update(gpu=props.name, capability=f"{props.major}.{props.minor}",
                    gpu_memory_gib=round(props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count)
    return meta


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _kill_group(proc: subprocess.Popen) -> None:
    """End a stage's process and its children (it leads its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


class Check:
    """One run of the stages: their processes, logs, results and the table."""

    def __init__(self, plan: Plan, out: Path, work: Path, budget_s: float, stages: tuple[str, ...]):
        self.plan, self.out, self.work, self.stages = plan, out, work, stages
        self.start = time.monotonic()
        self.deadline = self.start + budget_s
        self.results: dict[str, StageResult] = {}
        self.rows: list[Row] = []
        self.meta: dict[str, Any] = {"budget_s": budget_s, "stages": list(stages), "out": str(out),
                                     "work": str(work), **device_meta(plan)}
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), self.env.get("PYTHONPATH", "")) if p)
        self.env["PYTHONUNBUFFERED"] = "1"
        # The python's own bin folder last: its ninja (the kernel build needs one) when PATH has none. Not first: a
        # build directory built by two ninja versions in turn is rebuilt each time (they log commands differently).
        self.env["PATH"] = os.pathsep.join(p for p in (self.env.get("PATH", ""), str(Path(sys.executable).parent)) if p)
        self.env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        self.background: tuple[subprocess.Popen, float, Any, Any] | None = None  # the street's process
        self.scene_dir: Path | None = None  # the trained scene the render stage times
        self.kernel_missing = False  # the build stage ran and failed: the kernel stages are not run

    # ------------------------------------------------------------------------------------------ processes

    def log_path(self, stage: str) -> Path:
        return self.out / (LOG_FILES[stage] + ".part")

    def _open(self, stage: str, cmd: list[str], timeout: float) -> tuple[subprocess.Popen, Any, Any]:
        err = open(self.log_path(stage), "ab")
        err.write(f"==== {stage}: {shlex.join(cmd)} (timeout {timeout:.0f} s)\n".encode())
        err.flush()
        out = open(self.work / f"{stage}.stdout", "wb")
        proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                preexec_fn=os.setpgrp)
        return proc, err, out

    def _finish(self, stage: str, proc: subprocess.Popen, files: tuple[Any, Any], started: float,
                timeout: float) -> StageResult:
        """Wait for ``proc`` up to ``timeout`` seconds from ``started``; append its stdout to the stage's log."""
        err, out = files
        try:
            rc: int | None = proc.wait(timeout=max(1.0, started + timeout - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            rc = None
        out.close()
        stdout = (self.work / f"{stage}.stdout").read_text(errors="replace")
        seconds = time.monotonic() - started
        status = "timeout" if rc is None else ("ok" if rc == 0 else "failed")
        err.write(f"---- {stage} stdout ----\n{stdout}".encode())
        err.write(f"==== {stage}: {status} (exit code {rc}) in {seconds:.1f} s\n\n".encode())
        err.close()
        result = StageResult(stage, status, rc, round(seconds, 1), stdout)
        self.record(result)
        return result

    def run(self, stage: str, cmd: list[str], timeout: float) -> StageResult:
        """Run one stage to completion or ``timeout``, cut to end within GRACE_S of the budget (30 s at least)."""
        started = time.monotonic()
        timeout = min(timeout, max(MIN_STAGE_S, self.deadline + GRACE_S - started))
        self.say(f"{stage}: running (timeout {timeout:.0f} s)")
        proc, err, out = self._open(stage, cmd, timeout)
        try:
            return self._finish(stage, proc, (err, out), started, timeout)
        except BaseException:
            _kill_group(proc)
            raise

    def record(self, result: StageResult) -> None:
        self.results[result.name] = result
        note = f" ({result.note})" if result.note else ""
        self.say(f"{result.name}: {result.status} in {result.seconds:.0f} s{note}")
        self.write_results()

    def say(self, text: str) -> None:
        print(f"[gpu_check {time.monotonic() - self.start:5.0f} s] {text}", file=sys.stderr, flush=True)

    def python(self, *args: str) -> list[str]:
        return [sys.executable, *args]

    def inner(self, *args: str) -> list[str]:
        return self.python(str(Path(__file__).resolve()), "--inner", *args)

    # -------------------------------------------------------------------------------------------- outputs

    def write_results(self) -> None:
        data = {"meta": self.meta, "stages": {k: {**asdict(v), "stdout": None} for k, v in self.results.items()},
                "rows": [asdict(r) for r in self.rows], "figures": self.figures()}
        _atomic_write(self.out / "results.json", json.dumps(data, indent=2))

    def figures(self) -> dict[str, Any]:
        """The parsed results of each stage (what the rows are made from)."""
        figs: dict[str, Any] = {}
        for name, res in self.results.items():
            if name in ("hashgrid", "render", "build", "street"):
                figs[name] = _last_json(res.stdout)
            elif name == "train":
                figs[name] = _json_lines(res.stdout)
        return figs

    def finalize(self) -> int:
        """Rename the logs, write summary.md and results.json, print the table last; the exit status."""
        for part in self.out.glob("*.log.part"):
            os.replace(part, part.with_name(part.name[: -len(".part")]))
        fails = sum(r.result == "FAIL" for r in self.rows)
        passes = sum(r.result == "pass" for r in self.rows)
        where = self.meta.get("gpu") or "CPU (--cpu-smoke: targets not judged)"
        head = (f"gpu_check on {where}, torch {self.meta['torch']}: {passes} targets met, {fails} FAIL, "
                f"{time.monotonic() - self.start:.0f} s; logs in {self.out}")
        table = _table(self.rows)
        _atomic_write(self.out / "summary.md", head + "\n\n" + table + "\n")
        self.write_results()
        print("\n" + head + "\n\n" + table, flush=True)
        return 1 if fails else 0


# ------------------------------------------------------------------------------------------------- parsing


def _last_json(text: str) -> Any:
    """The last JSON document in ``text``: a one-line object, or an indented one that starts at a line '{'."""
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        line = lines[i].strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                return json.loads(line)
            except ValueError:
                pass
        if line == "{":
            try:
                return json.loads("\n".join(lines[i:]))
            except ValueError:
                pass
    return None


def _json_lines(text: str) -> list[dict]:
    rows = []
    for line in text.splitlines():
        if line.startswith("{") and line.rstrip().endswith("}"):
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    return rows


def _pytest_counts(text: str) -> dict[str, int]:
    """Counts from pytest's summary line ('3 passed, 1 skipped, 40 deselected in 2.1s')."""
    counts = {"passed": 0, "failed": 0, "skipped": 0, "error": 0, "deselected": 0}
    lines = [ln for ln in text.splitlines() if re.search(r"\d+ (passed|failed|error|skipped|deselected)", ln)]
    for n, word in re.findall(r"(\d+) (passed|failed|errors?|skipped|deselected)", lines[-1] if lines else ""):
        counts["error" if word.startswith("error") else word] += int(n)
    return counts


def _table(rows: list[Row]) -> str:
    cols = ("stage", "figure", "target", "result")
    cells = [cols] + [(r.stage, r.figure, r.target, r.result) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    fmt = [("| " + " | ".join(c[i].ljust(widths[i]) for i in range(4)) + " |") for c in cells]
    fmt.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(fmt)


def _judge(plan: Plan, ok: bool) -> str:
    """A performance target's result: judged on the GPU only."""
    return "-" if plan.smoke else ("pass" if ok else "FAIL")


def _fail_row(stage: str, res: StageResult | None, log: str, target: str = "", prefix: str = "") -> Row:
    if res is None:
        why = "not run"
    elif res.note:
        why = res.note
    elif res.status == "timeout":
        why = f"timed out after {res.seconds:.0f} s"
    elif res.status == "failed":
        why = f"exit code {res.rc}"
    else:
        why = "no result"
    return Row(stage, f"{prefix}{why}: see {log}", target, "FAIL")


def _rate(x: float) -> str:
    return f"{x:.3g}"


# -------------------------------------------------------------------------------------------------- stages


def stage_build(check: Check) -> None:
    plan = check.plan
    res = check.run("build", check.inner("build", plan.kernel), plan.timeouts["build"])
    info = _last_json(res.stdout) or {}
    if res.status == "ok" and info.get("built"):
        check.rows.append(Row("build", f"{plan.kernel} kernel built (or loaded from the cache) in "
                                       f"{info.get('seconds', res.seconds):.0f} s", "builds", "pass"))
        return
    if info.get("failure"):
        res.note = f"not built ({info['failure']})"[:200]
    check.rows.append(_fail_row("build", res, "build.log", "builds"))
    # Later stages would each try the build again (and time out the same way): the kernel stages are not run,
    # and training and rendering use the torch reference, so that their rows still say something.
    check.kernel_missing = True
    check.env["SIMRECON_ENCODING_BACKEND"] = "torch"


def _kernel_missing_row(check: Check, stage: str, target: str = "") -> Row:
    return Row(stage, f"not run: the {check.plan.kernel} kernel did not build (see build.log)", target, "FAIL")


def stage_parity(check: Check) -> None:
    plan = check.plan
    target = "all pass (tolerances stated in the tests)"
    if check.kernel_missing:
        check.rows.append(_kernel_missing_row(check, "parity", target))
        return
    cmd = check.python("-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "tests/test_encoding.py",
                       "tests/test_encoding_many.py", "-k", plan.parity_select)
    res = check.run("parity", cmd, plan.timeouts["parity"])
    n = _pytest_counts(res.stdout)
    # the kernel's own cases, parametrised by backend: "PASSED tests/...::test_kernel_half_table[cuda]"
    cases = len(re.findall(rf"^PASSED \S+\[[^\]]*\b{plan.kernel}\]", res.stdout, re.M))
    if res.status == "timeout" or not any(n.values()):
        check.rows.append(_fail_row("parity", res, "parity.log", target))
        return
    ok = res.status == "ok" and cases > 0 and not n["failed"] and not n["error"]
    check.rows.append(Row("parity", f"{plan.kernel} vs reference (fwd, table and position grads; one table and "
                                    f"many): {cases} {plan.kernel} cases passed; in all {n['passed']} passed, "
                                    f"{n['failed']} failed, {n['error']} errors, {n['skipped']} skipped",
                          target, "pass" if ok else "FAIL"))


def stage_hashgrid(check: Check) -> None:
    plan = check.plan
    if check.kernel_missing:
        check.rows.append(_kernel_missing_row(check, "hashgrid"))
        return
    cmd = check.python("benchmarks/hashgrid.py", "--device", plan.device, "--backends", plan.kernel,
                       "--log2-n", *map(str, plan.hash_sizes), *plan.hash_args, "--json")
    res = check.run("hashgrid", cmd, plan.timeouts["hashgrid"])
    data = _last_json(res.stdout)
    if not data:
        check.rows.append(_fail_row("hashgrid", res, "hashgrid.log"))
        return
    check.rows.extend(hashgrid_rows(plan, data["results"]))


def hashgrid_rows(plan: Plan, results: list[dict]) -> list[Row]:
    by = {(r["backend"], r["n"]): r for r in results}
    rows: list[Row] = []
    for k in plan.hash_sizes:
        stage = f"hashgrid 2^{k}"
        ker, ref = by.get((plan.kernel, 1 << k)), by.get(("torch", 1 << k))
        targets = (f">= {TARGET_POINTS_PER_S:.0e} pts/s", f">= {TARGET_SPEEDUP:.0f}x torch")
        if ker is None or ref is None:
            rows.append(Row(stage, f"no {plan.kernel} result (kernel not built? see build.log, hashgrid.log)",
                            targets[0] if k == plan.hash_target else "", "FAIL"))
            continue
        pps, speedup = ker["fwd_bwd_points_per_s"], ker["fwd_bwd_speedup"]
        figure = (f"{plan.kernel} fwd+bwd {_rate(pps)} pts/s (fwd {_rate(ker['fwd_points_per_s'])}); torch "
                  f"reference fwd+bwd {_rate(ref['fwd_bwd_points_per_s'])} pts/s")
        if k != plan.hash_target:
            rows.append(Row(stage, f"{figure}: {speedup:.1f}x"))
            continue
        rows.append(Row(stage, figure, targets[0], _judge(plan, pps >= TARGET_POINTS_PER_S)))
        rows.append(Row(stage, f"{plan.kernel} fwd+bwd {speedup:.1f}x the torch reference", targets[1],
                        _judge(plan, speedup >= TARGET_SPEEDUP)))
    return rows


def start_street(check: Check) -> None:
    """The street is generated on the CPU in the background while the first stages use the GPU."""
    timeout = check.plan.timeouts["street"]
    check.say(f"street: generating in the background (timeout {timeout:.0f} s)")
    proc, err, out = check._open("street", check.inner("street", str(check.work / "street"),
                                                       json.dumps(check.plan.street)), timeout)
    check.background = (proc, time.monotonic(), err, out)


def join_street(check: Check) -> None:
    if check.background is None:
        return
    proc, started, err, out = check.background
    check.background = None
    res = check._finish("street", proc, (err, out), started, check.plan.timeouts["street"])
    info = _last_json(res.stdout)
    if res.status != "ok" or not info:
        check.rows.append(_fail_row("street", res, "train.log"))
        return
    check.rows.append(Row("street", f"{info['width']}x{info['height']}, {info['frames']} frames, {info['sweeps']} "
                                    f"lidar sweeps, {info['actors']} actors: generated in {info['seconds']:.0f} s"))


def stop_background(check: Check) -> None:
    if check.background is not None:
        proc, _, err, out = check.background
        check.background = None
        _kill_group(proc)
        err.close()
        out.close()


def choose_marks(plan: Plan, left_s: float) -> tuple[tuple[float, ...], tuple[float, ...], float]:
    """(marks to train, marks skipped, estimated seconds): the first mark and every mark up to the target, later
    ones while the estimate fits in ``left_s``."""
    kept: list[float] = []
    cost, prev = plan.train_startup_s, 0.0
    for m in plan.marks:
        add = ((m - prev) if plan.resume_marks else m) * 60 + plan.train_per_mark_s
        if kept and m > plan.target_minutes and cost + add > left_s:
            break
        kept.append(m)
        cost, prev = cost + add, m
    return tuple(kept), plan.marks[len(kept):], cost


def stage_train(check: Check) -> None:
    plan = check.plan
    street = check.work / "street"
    if not (street / "log" / "transforms.json").is_file():
        res = StageResult("train", "skipped", note=f"no street in {street} (the street stage failed or did not run)")
        check.record(res)
        check.rows.append(_fail_row("train", res, "train.log"))
        return
    reserve = plan.render_reserve_s if "render" in check.stages else 0.0
    kept, skipped, cost = choose_marks(plan, check.deadline - time.monotonic() - reserve)
    check.say(f"train: marks {','.join(f'{m:g}' for m in kept)} min (~{cost:.0f} s)"
              + (f"; skipped {','.join(f'{m:g}' for m in skipped)} (time budget)" if skipped else ""))
    cmd = check.python("benchmarks/reconstruct.py", "--street", str(street), "--out", str(check.work / "train"),
                       "--preset", plan.preset, "--device", plan.device, "--marks", ",".join(f"{m:g}" for m in kept),
                       "--gt-frames", "0", "--json", *(["--resume-marks"] if plan.resume_marks else []))
    res = check.run("train", cmd, cost * 1.2 + 30)
    check.scene_dir = check.work / "train" / ("scene" if plan.resume_marks else f"scene_{kept[-1]:g}min")
    check.rows.extend(_noted(check, train_rows(plan, skipped, res, _json_lines(res.stdout))))


def train_rows(plan: Plan, skipped: tuple[float, ...], res: StageResult, marks: list[dict]) -> list[Row]:
    by = {float(r["minutes"]): r for r in marks if "minutes" in r}
    rows: list[Row] = []
    for m in plan.marks:
        stage = f"train {m:g} min"
        target = f">= {TARGET_PSNR_DB:.0f} dB held out" if m == plan.target_minutes else ""
        r = by.get(m)
        if m in skipped:
            rows.append(Row(stage, "skipped: would end past the time budget (--budget-s)", target, "skip"))
        elif r is None:
            rows.append(_fail_row(stage, res, "train.log", target, prefix="not reached: "))
        else:
            psnr = r.get("heldout_psnr")
            shown = "no held-out frames" if psnr is None else f"held-out {psnr:.2f} dB (SSIM {r.get('heldout_ssim')})"
            rays = r.get("rays_per_s_median")
            figure = f"{shown}, {r['steps']} steps, " + ("no step logged" if rays is None else
                                                         f"{rays:,.0f} rays/s (median)")
            rows.append(Row(stage, figure, target, _judge(plan, psnr is not None and psnr >= TARGET_PSNR_DB)
                            if target else "info"))
    if res.status != "ok" and len(by) == len(plan.marks) - len(skipped):
        rows.append(_fail_row("train", res, "train.log", prefix="after the marks: "))
    return rows


def stage_render(check: Check) -> None:
    plan = check.plan
    scene = check.scene_dir or check.work / "train" / "scene"
    if not (scene / "model.pt").is_file():
        res = StageResult("render", "skipped", note=f"no trained scene in {scene} (the train stage failed or did "
                                                    f"not run)")
        check.record(res)
        check.rows.append(_fail_row("render", res, "render.log"))
        return
    cmd = check.python("benchmarks/render.py", "--scene", str(scene), "--device", plan.device,
                       "--size", *plan.render_sizes, "--frames", str(plan.render_frames),
                       "--budget", str(plan.render_budget_s), "--json")
    res = check.run("render", cmd, plan.timeouts["render"])
    data = _last_json(res.stdout)
    if not data:
        check.rows.append(_fail_row("render", res, "render.log"))
        return
    check.rows.extend(_noted(check, [
        Row(f"render {r['size']}", f"fast {r['fast_frames_per_s']:.2f} frames/s at {r['width']}x{r['height']}, "
                                   f"{r['speedup']:.2f}x the reference renderer ({r['frames']} held-out frames)")
        for r in data["results"]]))


def _noted(check: Check, rows: list[Row]) -> list[Row]:
    """Rows of a stage that ran on the torch reference because the kernel did not build say so."""
    if check.kernel_missing:
        for r in rows:
            r.figure += " [torch reference: the kernel did not build]"
    return rows


def run_all(check: Check) -> None:
    """The stages in order; the street generates in the background from the start."""
    chosen = check.stages
    if "street" in chosen:
        start_street(check)
    for name, fn in (("build", stage_build), ("parity", stage_parity), ("hashgrid", stage_hashgrid),
                     ("street", join_street), ("train", stage_train), ("render", stage_render)):
        if name in chosen:
            fn(check)
        else:
            check.rows.append(Row(name, "not run (--stages)", "", "skip"))
        check.write_results()  # what a run stopped from outside leaves behind


# ------------------------------------------------------------------------------ inner commands (stages)


def inner_build(kernel: str) -> int:
    """Build (or load) the ``kernel`` extension; the toolchain's versions first. Last stdout line: JSON."""
    if kernel == "cuda":
        for tool in (["nvidia-smi"], ["nvcc", "--version"]):
            if shutil.which(tool[0]) is None:
                print(f"{tool[0]}: not on PATH", file=sys.stderr, flush=True)
                continue
            try:
                subprocess.run(tool, stdout=sys.stderr, stderr=sys.stderr, timeout=60, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                print(f"{tool[0]}: {exc}", file=sys.stderr, flush=True)
    import torch

    from simrecon.encoding import _build

    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), kernels {_build.kernels_dir()}, cache "
          f"{_build.cache_dir()}, TORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST')!r}",
          file=sys.stderr, flush=True)
    start = time.perf_counter()
    module = _build.load_extension(kernel, verbose=True)
    print(json.dumps({"kernel": kernel, "built": module is not None, "seconds": round(time.perf_counter() - start, 1),
                      "module": getattr(module, "__name__", None), "failure": _build.build_failure(kernel)}),
          flush=True)
    return 0 if module is not None else 1


def inner_street(folder: Path, fields: dict[str, Any]) -> int:
    """Generate the synthetic street into ``folder``. Last stdout line: JSON."""
    import torch

    from simrecon.data.io import load_log
    from simrecon.synth import SynthConfig, generate

    torch.set_num_threads(max(1, (os.cpu_count() or 1) - 4))  # leaves cores to the kernel build beside it
    cfg = SynthConfig(**fields)
    start = time.perf_counter()
    log = load_log(generate(folder, cfg, force=True))
    print(json.dumps({"seconds": round(time.perf_counter() - start, 1), "width": cfg.width, "height": cfg.height,
                      "frames": len(log.frames), "sweeps": len(log.lidar), "actors": len(log.actors)}), flush=True)
    return 0


def inner_main(argv: list[str]) -> int:
    if argv[:1] == ["build"] and len(argv) == 2:
        return inner_build(argv[1])
    if argv[:1] == ["street"] and len(argv) == 3:
        return inner_street(Path(argv[1]), json.loads(argv[2]))
    print(f"gpu_check: --inner: expected build KERNEL or street FOLDER FIELDS, got {argv}", file=sys.stderr)
    return 2


# ---------------------------------------------------------------------------------------------------- main


def prepare_folders(args: argparse.Namespace) -> tuple[Path, Path]:
    """--out (this run's own files there removed first: logs are appended to) and --work."""
    out = args.out or Path(os.environ.get("OUT") or "gpu-check-out")
    out.mkdir(parents=True, exist_ok=True)
    for name in {*LOG_FILES.values(), "results.json", "summary.md"}:
        for stale in (out / name, out / (name + ".part")):
            stale.unlink(missing_ok=True)
    if args.work is None:
        return out, Path(tempfile.mkdtemp(prefix="simrecon-gpu-check-"))
    args.work.mkdir(parents=True, exist_ok=True)
    return out, args.work


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--inner"]:
        return inner_main(argv[1:])
    args = parse_args(argv)
    if not args.cpu_smoke:
        problem = cuda_problem()
        if problem:
            print(f"gpu_check: {problem}", file=sys.stderr)
            return 2
    plan = make_plan(args.cpu_smoke, args.marks, args.fresh_marks)
    try:
        out, work = prepare_folders(args)
    except OSError as exc:
        print(f"gpu_check: --out/--work: {exc}", file=sys.stderr)
        return 2
    budget = args.budget_s or (300.0 if plan.smoke else 500.0)
    check = Check(plan, out.resolve(), work.resolve(), budget, args.stages)
    check.say(f"{check.meta.get('gpu') or 'CPU smoke'}; out {check.out}, work {check.work}, budget {budget:.0f} s")
    try:
        run_all(check)
    except Exception as exc:  # noqa: BLE001 - a bug here must still leave the table and the logs
        import traceback

        traceback.print_exc()
        check.rows.append(Row("gpu_check", f"internal error: {type(exc).__name__}: {exc}", "", "FAIL"))
    finally:
        stop_background(check)
        if args.work is None:  # a temporary folder of this run (street, scenes: hundreds of MB); --work keeps it
            shutil.rmtree(work, ignore_errors=True)
    return check.finalize()


if __name__ == "__main__":
    raise SystemExit(main())
