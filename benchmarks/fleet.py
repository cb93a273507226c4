"""Fleet overhead: N tiny synthetic logs through convert -> validate -> reconstruct (tiny) -> eval -> compose, by
hand (the same simrecon commands one after another) and as one fleet (local executor, and Ray embedded).

    .venv/bin/python benchmarks/fleet.py [--logs 4] [--steps 40] [--ray-cpus 2] [--processes]
    .venv/bin/python benchmarks/fleet.py --memory     # the driver's peak memory with 20 and with 200 logs

Prints the wall time of each way and the fleet's overhead over the same commands called one after another in one
process (no start-up cost: the strictest reference); with --processes also over the commands as separate
processes (what a user types; each pays Python, torch and kernel loading). Ray is timed cold (ray.init and
workers that import torch and load the kernels) and warm (a second fleet on the same Ray). Each log is a
nerfstudio capture made from a synthetic drive (160x96, 5 timestamps).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers import SMALL  # noqa: E402

from simrecon.synth import generate  # noqa: E402

SETTINGS = ["priors.free_columns.weight=0", "priors.lidar_prior.steps=0"]


def captures(root: Path, n: int) -> list[Path]:
    """``n`` nerfstudio captures (images + transforms.json) made from synthetic drives of seeds 0..n-1."""
    out = []
    for i in range(n):
        log = generate(root / f"synth{i}", dataclasses.replace(SMALL, seed=i, ground_truth=False))
        cap = root / f"drive{i}"
        shutil.copytree(log / "images", cap / "images")
        doc = json.loads((log / "transforms.json").read_text())
        keep = ("camera_model", "fl_x", "fl_y", "cx", "cy", "w", "h", "frames")
        (cap / "transforms.json").write_text(json.dumps({k: v for k, v in doc.items() if k in keep}))
        out.append(cap)
    (root / "front.yaml").write_text(yaml.safe_dump({"name": "front", "scene": "unused", "cameras": ["front"],
                                                     "outputs": ["rgb", "depth"]}))
    return out


def commands(cap: Path, out: Path, steps: int, scenario: Path) -> list[list[str]]:
    log, scene = out / cap.name / "log", out / cap.name / "scene"
    sets = [a for s in SETTINGS for a in ("--set", s)]
    doc = yaml.safe_load(scenario.read_text())
    doc["scene"] = str(scene)
    per_log = out / cap.name / "front.yaml"
    per_log.parent.mkdir(parents=True, exist_ok=True)
    per_log.write_text(yaml.safe_dump(doc))
    return [["convert", "nerfstudio", str(cap), str(log)], ["validate", str(log)],
            ["reconstruct", str(log), "-o", str(scene), "--preset", "tiny", "--steps", str(steps), "--holdout",
             "every:2", *sets], ["eval", str(scene)], ["compose", str(per_log), "-o", str(out / cap.name / "front")]]


def by_hand(caps: list[Path], out: Path, steps: int, scenario: Path, processes: bool) -> float:
    from simrecon.cli.main import main

    start = time.time()
    for cap in caps:
        for args in commands(cap, out, steps, scenario):
            if processes:
                subprocess.run([sys.executable, "-m", "simrecon", *args], check=True, capture_output=True)
            elif main(args) != 0:
                raise SystemExit(f"simrecon {' '.join(args)} failed")
    return time.time() - start


def fleet(root: Path, caps: list[Path], out: Path, steps: int, executor) -> float:
    from simrecon.fleet import load_spec, run_fleet

    spec = root / "fleet.yaml"
    spec.write_text(yaml.safe_dump({"logs": [{"path": str(c), "convert": "nerfstudio"} for c in caps], "stages": [
        "validate", {"reconstruct": {"preset": "tiny", "steps": steps, "holdout": "every:2", "set": SETTINGS}},
        "eval", {"compose": {"scenarios": [str(root / "front.yaml")]}}]}))
    start = time.time()
    manifest = run_fleet(load_spec(spec), out, executor)
    if manifest.failed:
        raise SystemExit(f"fleet failed: {[(l.name, s.name, s.error) for l in manifest.logs for s in l.stages]}")
    return time.time() - start


def ray_runs(root: Path, caps: list[Path], steps: int, cpus: int) -> dict[str, float]:
    import ray

    from simrecon.fleet import RayExecutor

    start = time.time()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    started = time.time() - start
    try:
        cold = fleet(root, caps, root / "r1", steps, RayExecutor())
        warm = fleet(root, caps, root / "r2", steps, RayExecutor())
    finally:
        ray.shutdown()
    return {f"fleet on Ray, {cpus} CPUs, cold (ray.init included)": started + cold,
            f"fleet on Ray, {cpus} CPUs, warm workers": warm}


def memory_run(n: int, cpus: int) -> None:
    """A validate-only fleet of ``n`` logs (links to one synthetic log) on an embedded Ray; prints the driver's peak
    resident memory."""
    import resource

    from simrecon.fleet import RayConfig, RayExecutor, load_spec, run_fleet

    root = Path(tempfile.mkdtemp(prefix="fleet-mem-"))
    try:
        log = generate(root / "synth", dataclasses.replace(SMALL, ground_truth=False))
        for i in range(n):
            (root / f"d{i}").mkdir()
            (root / f"d{i}" / "log").symlink_to(log)
        spec = root / "fleet.yaml"
        spec.write_text(yaml.safe_dump({"logs": ["d*/log"], "stages": [{"validate": {"quick": True}}]}))
        start = time.time()
        manifest = run_fleet(load_spec(spec), root / "out", RayExecutor(RayConfig(num_cpus=cpus)))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"  {n:4d} logs: driver peak {peak:.0f} MiB resident, {time.time() - start:.1f} s, "
              f"{manifest.failed} failed")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    from simrecon.fleet import LocalExecutor, ray_available

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--logs", type=int, default=4)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--ray-cpus", type=int, default=2)
    ap.add_argument("--processes", action="store_true", help="also time the commands as separate processes")
    ap.add_argument("--memory", action="store_true", help="the driver's peak memory with 20 and with 200 logs")
    ap.add_argument("--memory-run", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_run:
        return memory_run(args.memory_run, args.ray_cpus)
    if args.memory:
        print("validate-only fleets on Ray (each in a fresh process):")
        for n in (20, 200):
            subprocess.run([sys.executable, __file__, "--memory-run", str(n), "--ray-cpus", str(args.ray_cpus)],
                           check=True)
        return None
    root = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    try:
        caps = captures(root, args.logs)
        fleet(root, caps[:1], root / "warm", 2, LocalExecutor())  # kernels built, caches warm: not timed
        results = {"by hand, commands in one process": by_hand(caps, root / "c", args.steps, root / "front.yaml",
                                                               False),
                   "fleet --executor local": fleet(root, caps, root / "fl", args.steps, LocalExecutor())}
        if args.processes:
            results["by hand, one process per command"] = by_hand(caps, root / "p", args.steps, root / "front.yaml",
                                                                  True)
        if ray_available():
            results.update(ray_runs(root, caps, args.steps, args.ray_cpus))
        print(f"{args.logs} logs, convert/validate/reconstruct(tiny, {args.steps} steps)/eval/compose:")
        strict = results["by hand, commands in one process"]
        for name, seconds in results.items():
            print(f"  {name:<52} {seconds:6.1f} s  ({100 * (seconds / strict - 1):+5.1f} % over by hand)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
