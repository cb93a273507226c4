"""benchmarks/gpu_check.py: it refuses cleanly without a GPU, its CPU smoke mode runs every stage end to end, and
its targets and time budget are applied as documented (docs/kernels.md, "GPU check")."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
WRAPPER = ROOT / "benchmarks" / "gpu_check.sh"
LOGS = {"build.log", "parity.log", "hashgrid.log", "train.log", "render.log"}


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def _env(**extra: str) -> dict[str, str]:
    """This environment with no GPU visible (also on a GPU machine) and no $OUT of the device tool."""
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    env.update(extra)
    return env


def _assert_refused(proc: subprocess.CompletedProcess, seconds: float, out: Path) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # one line, no traceback
    assert lines[0].startswith("gpu_check: no CUDA device") and "--cpu-smoke" in lines[0]
    assert proc.stdout == ""
    assert seconds < 30  # fails fast: one torch import, nothing run
    assert not out.exists()  # nothing written


def test_refuses_without_gpu_in_one_line(tmp_path):
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(SCRIPT)], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=120)
    _assert_refused(proc, time.monotonic() - start, tmp_path / "gpu-check-out")  # the default --out


def test_shell_wrapper_refuses_without_gpu(tmp_path):
    start = time.monotonic()
    proc = subprocess.run(["bash", str(WRAPPER)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env=_env(PYTHON=sys.executable, OUT=str(tmp_path / "out")))
    _assert_refused(proc, time.monotonic() - start, tmp_path / "out")


def test_bad_option_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--cpu-smoke", "--stages", "build,bogus"], cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "gpu_check: --stages: expected names from build,parity,hashgrid,street,train,render, got 'build,bogus' "
        "(see --help)"]


def test_cpu_smoke_runs_every_stage(tmp_path, cpu_ext):
    out, work = tmp_path / "out", tmp_path / "work"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--cpu-smoke", "--out", str(out), "--work", str(work)],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    table = lines[next(i for i, line in enumerate(lines) if line.startswith("| stage")):]
    assert all(line.startswith("|") for line in table)  # the table is printed last
    names = [line.split("|")[1].strip() for line in table[2:]]
    stages = {name.split()[0] for name in names}
    assert stages == {"build", "parity", "hashgrid", "street", "train", "render"}
    assert {"hashgrid 2^10", "hashgrid 2^12", "train 0.1 min", "train 0.15 min", "render log",
            "render 192x108"} <= set(names)
    assert [line.split("|")[4].strip() for line in table[2:] if line.split("|")[4].strip() not in
            ("pass", "info", "-")] == []  # build and parity pass; figures shown; nothing failed or skipped
    # within what the device tool brings back (at most 8 files), every log complete (renamed from *.part)
    files = {p.name for p in out.iterdir()}
    assert files == LOGS | {"results.json", "summary.md"}
    results = json.loads((out / "results.json").read_text())
    assert {k: v["status"] for k, v in results["stages"].items()} == dict.fromkeys(
        ("build", "parity", "hashgrid", "street", "train", "render"), "ok")
    assert results["figures"]["render"]["results"][1]["width"] == 192
    assert [r["minutes"] for r in results["figures"]["train"]] == [0.1, 0.15]
    assert "\n".join(table) in (out / "summary.md").read_text()
    assert "==== train: ok" in (out / "train.log").read_text()


def test_training_marks_fit_the_budget_but_the_target_is_always_trained():
    gc = _module()
    plan = gc.make_plan(smoke=False, marks=None, fresh=False)  # marks 1, 2, 5 min, one run resumed to each
    assert plan.marks == (1.0, 2.0, 5.0) and plan.target_minutes == 2.0
    kept, skipped, cost = gc.choose_marks(plan, 10_000)
    assert kept == (1.0, 2.0, 5.0) and skipped == () and cost == pytest.approx(15 + 3 * 15 + 5 * 60)
    kept, skipped, _ = gc.choose_marks(plan, 300)  # the 5-minute mark needs 3 more minutes
    assert kept == (1.0, 2.0) and skipped == (5.0,)
    assert gc.choose_marks(plan, 0)[:2] == ((1.0, 2.0), (5.0,))  # never skips the target
    fresh = gc.make_plan(smoke=False, marks=(1.0, 2.0, 5.0), fresh=True)  # a run per mark: 8 minutes of training
    assert gc.choose_marks(fresh, 400)[:2] == ((1.0, 2.0), (5.0,))
    rows = gc.train_rows(plan, (5.0,), gc.StageResult("train", "ok", 0), [
        {"minutes": 1.0, "steps": 900, "rays_per_s_median": 4e5, "heldout_psnr": 33.1, "heldout_ssim": 0.9},
        {"minutes": 2.0, "steps": 1800, "rays_per_s_median": 4e5, "heldout_psnr": 35.2, "heldout_ssim": 0.93}])
    assert [(r.stage, r.result) for r in rows] == [("train 1 min", "info"), ("train 2 min", "pass"),
                                                   ("train 5 min", "skip")]


def test_hashgrid_targets_are_judged_on_the_gpu_only():
    gc = _module()

    def results(points_per_s: float, speedup: float) -> list[dict]:
        out = []
        for k in (18, 20, 22):
            out.append({"backend": "torch", "n": 1 << k, "fwd_points_per_s": 1e8, "fwd_bwd_points_per_s": 2e7,
                        "fwd_bwd_speedup": 1.0})
            out.append({"backend": "cuda", "n": 1 << k, "fwd_points_per_s": 3e9,
                        "fwd_bwd_points_per_s": points_per_s, "fwd_bwd_speedup": speedup})
        return out

    gpu = gc.make_plan(smoke=False, marks=None, fresh=False)
    judged = [r for r in gc.hashgrid_rows(gpu, results(1.2e9, 60.0)) if r.target]
    assert [(r.stage, r.result) for r in judged] == [("hashgrid 2^20", "pass")] * 2
    judged = [r for r in gc.hashgrid_rows(gpu, results(0.9e9, 45.0)) if r.target]
    assert [r.result for r in judged] == ["FAIL", "FAIL"]
    missing = gc.hashgrid_rows(gpu, [r for r in results(1.2e9, 60.0) if r["backend"] == "torch"])
    assert [r.result for r in missing] == ["FAIL"] * 3  # no kernel figures: the kernel did not run
    smoke = gc.make_plan(smoke=True, marks=None, fresh=False)
    rows = gc.hashgrid_rows(smoke, [{**r, "backend": "cpu" if r["backend"] == "cuda" else "torch",
                                     "n": r["n"] >> 8} for r in results(0.9e9, 45.0)])
    assert [r.result for r in rows if r.target] == ["-", "-"]  # shown, not judged


def test_pytest_summary_is_read():
    gc = _module()
    text = "PASSED tests/test_encoding.py::test_kernel_half_table[cuda]\n== 9 passed, 1 skipped, 40 deselected in 3.1s =="
    assert gc._pytest_counts(text) == {"passed": 9, "failed": 0, "skipped": 1, "error": 0, "deselected": 40}
    assert gc._pytest_counts("== 1 failed, 2 errors in 1s ==")["error"] == 2


def test_stage_environment_needs_no_install(tmp_path):
    gc = _module()
    check = gc.Check(gc.make_plan(smoke=True, marks=None, fresh=False), tmp_path, tmp_path, 60.0, gc.STAGES)
    assert check.env["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)  # simrecon imported from this checkout
    # the python's bin folder only last: a ninja already on PATH keeps building the kernels (two ninja versions
    # in turn rebuild the shared kernel cache every time)
    assert check.env["PATH"].split(os.pathsep)[-1] == str(Path(sys.executable).parent)
    assert check.env["PATH"].startswith(os.environ["PATH"])
