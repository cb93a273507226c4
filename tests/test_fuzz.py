"""The standing fuzz suite: every case of tests/fuzz_corpus.py ends with exit code 2, one line naming the
file and the field, no traceback, no output folder and nothing written outside its own folder.

Each test runs one group of the corpus through the CLI in this process and lists every case that broke
a rule, so one run shows all of them."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

import fuzz_corpus
from fuzz_corpus import Case
from simrecon.cli.main import main
from simrecon.train import preset, reconstruct


@pytest.fixture(scope="module")
def corpus(synth_small, tmp_path_factory) -> tuple[Path, list[Case]]:
    """The whole corpus, built once under a deep folder (so '../../..' escapes stay inside the test's tmp)."""
    top = tmp_path_factory.mktemp("fuzz")
    cfg = preset("tiny")
    cfg.budget.steps = 2
    scene = top / "scene"
    reconstruct(synth_small / "log", scene, cfg)
    root = top / "a" / "b" / "c" / "corpus"
    return top, fuzz_corpus.build(root, synth_small / "log", scene)


def _system_files() -> set[tuple[int, int]]:
    """(device, inode) of the files the corpus tries to have a reader hard-link into its output (S3)."""
    return {(os.stat(p).st_dev, os.stat(p).st_ino) for p in ("/etc/passwd", "/etc/hostname") if os.path.exists(p)}


def _broken_rules(case: Case, rc: int, err: str) -> str | None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if "Traceback" in err:
        return "traceback"
    if rc != 2:
        return f"exit {rc}"
    if case.lines is not None and len(lines) != case.lines:
        return f"{len(lines)} error lines"
    head = lines[0] if case.lines == 1 else err
    if case.file not in head:
        return f"does not name {case.file}"
    if case.field and case.field not in head:
        return f"does not name the field {case.field}"
    if case.out is not None and Path(case.out).exists():
        return f"left {case.out} behind"
    return None


def _run_group(corpus, capsys, prefix: str) -> None:
    top, cases = corpus
    group = [c for c in cases if c.id.startswith(prefix)]
    assert group, prefix
    failures = []
    started = time.time() - 1.0  # what an older run left in /tmp is not this run's doing
    cwd = os.getcwd()
    os.chdir(top)  # a payload that ran would leave PWNED here
    try:
        for case in group:
            capsys.readouterr()
            try:
                rc = main(case.argv)
            except BaseException as exc:  # noqa: BLE001 - the user would have seen a traceback
                rc = 1
                print(f"Traceback: {type(exc).__name__}: {str(exc)[:200]}", file=sys.stderr)
            err = capsys.readouterr().err
            broken = _broken_rules(case, rc, err)
            if broken:
                failures.append(f"{case.id}: {broken}: {err.strip().splitlines()[-1] if err.strip() else ''}")
    finally:
        os.chdir(cwd)
    outside = [Path(p) for p in ("/tmp/ESCAPED", "/tmp/ESCAPED_CAM", "/tmp/ESCAPED_SUITE")]  # absolute names
    escaped = [str(p) for p in top.rglob("*ESCAPED*")] + [str(p) for p in outside
                                                          if p.exists() and p.stat().st_mtime >= started]
    assert not escaped, escaped
    assert not list(top.rglob("PWNED")), "a pickle or YAML payload ran"
    linked = [p for p in top.rglob("*") if p.is_file() and (p.stat().st_dev, p.stat().st_ino) in _system_files()]
    assert not linked, f"system files linked into an output: {linked}"
    assert not failures, f"{len(failures)} of {len(group)} cases:\n" + "\n".join(failures)


@pytest.mark.parametrize("group", ["log-", "capture-", "scenario-", "suite-", "poses-", "scene-"])
def test_every_case_is_refused_cleanly(corpus, capsys, group):
    _run_group(corpus, capsys, group)
