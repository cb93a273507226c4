"""Shared fixtures: one small synthetic drive per test session (generated, never committed)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: robust when the machine is busy

import pytest  # noqa: E402

from helpers import SMALL, XS  # noqa: E402

from simrecon.synth import generate  # noqa: E402


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory) -> "pytest.TempPathFactory":
    """Folder with log/ and gt/ of a 5-timestamp synthetic drive at 160x96."""
    out = tmp_path_factory.mktemp("synth") / "street"
    generate(out, SMALL)
    return out


@pytest.fixture(scope="session")
def cpu_ext():
    """The fused CPU hash-grid kernel, built once per session (skips when this machine cannot build it)."""
    from simrecon.encoding import _build

    module = _build.load_extension("cpu")
    if module is None:
        pytest.skip(f"CPU kernel unavailable: {_build.build_failure('cpu')}")
    return module


@pytest.fixture(scope="module")
def xs_log(tmp_path_factory):
    """A 3-timestamp 64x48 synthetic drive log (no ground truth), one per test module."""
    out = tmp_path_factory.mktemp("xs") / "street"
    generate(out, XS)
    return out / "log"
