"""Shared fixtures: one small synthetic drive per test session (generated, never committed)."""

from __future__ import annotations

import pytest

from helpers import SMALL

from simrecon.synth import generate


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory) -> "pytest.TempPathFactory":
    """Folder with log/ and gt/ of a 5-timestamp synthetic drive at 160x96."""
    out = tmp_path_factory.mktemp("synth") / "street"
    generate(out, SMALL)
    return out
