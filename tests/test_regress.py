"""Regression runner: a suite passes unchanged, fails when a render is perturbed; PSNR/SSIM definitions."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import yaml
from rich.console import Console

from simrecon.cli.compose_cmd import regress_command
from simrecon.scene.metrics import gaussian_window, psnr, ssim
from simrecon.export.regress import regress
from simrecon.data.scene_api import RenderOutput


class Noisy:
    """Wraps a scene and adds noise to its RGB (a perturbed renderer)."""

    def __init__(self, scene, sigma=0.08):
        self.scene, self.sigma = scene, sigma

    @property
    def log(self):
        return self.scene.log

    def render(self, c2w, intrinsics, time, placements, outputs=("rgb", "depth", "instance")):
        out = self.scene.render(c2w, intrinsics, time, placements, outputs)
        if out.rgb is not None:
            rng = np.random.default_rng(0)
            out = RenderOutput(np.clip(out.rgb + rng.normal(0, self.sigma, out.rgb.shape), 0, 1).astype(np.float32),
                               out.depth, out.instance, out.instance_names)
        return out


@pytest.fixture()
def suite(tmp_path, synth_small):
    base = {"scene": str(synth_small / "log"), "cameras": [{"name": "front", "scale": 0.5}],
            "time": {"times": [0.0, 0.2]}, "visibility": "none"}
    (tmp_path / "remove.yaml").write_text(yaml.safe_dump({**base, "actors": [{"id": "car_0", "remove": True}]}))
    (tmp_path / "shift.yaml").write_text(yaml.safe_dump({**base, "ego": {"lateral": 1.0}}))
    doc = {"name": "street", "golden": "golden",
           "thresholds": {"psnr_min": 40, "ssim_min": 0.99},
           "scenarios": [{"scenario": "remove.yaml"}, {"scenario": "shift.yaml", "thresholds": {"psnr_min": 35}}]}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_suite_passes_unchanged_and_fails_when_perturbed(tmp_path, suite):
    first = regress(suite, out=tmp_path / "r0")
    assert not first.passed and "run with --update-golden" in first.cases[0].error
    upd = regress(suite, update_golden=True, out=tmp_path / "r1")
    assert upd.passed and all(c.updated for c in upd.cases)
    assert (tmp_path / "golden" / "remove" / "manifest.json").is_file()

    console = Console(file=io.StringIO(), width=200)
    assert regress_command(suite, out=tmp_path / "r2", console=console) == 0
    assert "suite street: passed" in console.file.getvalue()
    ok = regress(suite, out=tmp_path / "r2")  # (re-rendering into the same report folder replaces it)
    assert ok.passed
    assert all(c.summary["psnr_mean"] == 100.0 and c.summary["ssim_mean"] == pytest.approx(1.0) for c in ok.cases)
    junit = ET.parse(ok.junit).getroot()
    assert junit.get("tests") == "2" and junit.get("failures") == "0" and not list(junit.iter("failure"))
    assert "PASSED" in ok.html.read_text()

    bad = regress(suite, out=tmp_path / "r4", scene_wrapper=Noisy)
    assert not bad.passed
    assert all(any(f.startswith("PSNR") for f in c.failures) for c in bad.cases)
    junit = ET.parse(bad.junit).getroot()
    assert junit.get("failures") == "2" and len(list(junit.iter("failure"))) == 2
    html = bad.html.read_text()
    assert "FAILED" in html and "golden | render | difference" in html
    for c in bad.cases:
        assert c.images and all((bad.out / p).is_file() for p in c.images)
    summary = json.loads((bad.out / "summary.json").read_text())
    assert summary["passed"] is False


def test_moving_an_actor_is_a_regression(tmp_path, suite):
    regress(suite, update_golden=True, out=tmp_path / "r1")
    doc = yaml.safe_load((tmp_path / "remove.yaml").read_text())
    doc["actors"].append({"id": "car_1", "translate": [0.0, 2.0, 0.0]})
    (tmp_path / "remove.yaml").write_text(yaml.safe_dump(doc))
    console = Console(file=io.StringIO(), width=200)
    code = regress_command(suite, out=tmp_path / "r2", console=console)
    assert code == 1
    text = console.file.getvalue()
    assert "FAIL remove: PSNR" in text and "PASS shift" in text and "1 of 2 failed" in text


def test_golden_scene_scores_one_scene_against_another(tmp_path, suite, synth_small):
    """The scoring path for a reconstruction: golden renders come from the synthetic street's ground truth."""
    doc = yaml.safe_load(suite.read_text())
    doc.update({"golden_scene": str(synth_small / "log"), "scene": str(synth_small / "log"), "golden": "gt"})
    doc["scenarios"] = doc["scenarios"][:1]
    doc["thresholds"] = {"psnr_min": 24}
    suite.write_text(yaml.safe_dump(doc))
    res = regress(suite, out=tmp_path / "r")  # golden renders are made on demand from golden_scene
    assert res.passed and all(c.updated for c in res.cases)
    assert all(c.summary["psnr_mean"] == 100.0 for c in res.cases)
    res = regress(suite, out=tmp_path / "r", scene_wrapper=lambda s: Noisy(s, 0.2))
    assert not res.passed


def test_bad_suite(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump({"scenarios": [{"scenario": "a.yaml", "thresholds": {"psnr": 3}}]}))
    with pytest.raises(ValueError, match=r"s\.yaml: scenarios\[0\]\.thresholds\.psnr: unknown threshold"):
        regress(p, out=tmp_path / "o")
    p.write_text(yaml.safe_dump({"scenarios": []}))
    with pytest.raises(ValueError, match=r"s\.yaml: scenarios: "):
        regress(p, out=tmp_path / "o")


def test_psnr():
    a = np.zeros((8, 8, 3))
    assert psnr(a, a + 0.1) == pytest.approx(20.0)
    assert psnr(a, a) == 100.0
    assert psnr(np.full((4, 4), 255, np.uint8), np.full((4, 4), 230, np.uint8)) == pytest.approx(
        10 * np.log10(1 / (25 / 255) ** 2))


def _ssim_naive(a, b):
    """Direct definition: every 11x11 window, Gaussian weights (sigma 1.5), valid positions only."""
    g = gaussian_window(11, 1.5)
    w = np.outer(g, g)
    c1, c2 = 0.01**2, 0.03**2
    vals = []
    for i in range(a.shape[0] - 10):
        for j in range(a.shape[1] - 10):
            x, y = a[i:i + 11, j:j + 11], b[i:i + 11, j:j + 11]
            mx, my = (w * x).sum(), (w * y).sum()
            vx, vy = (w * x * x).sum() - mx**2, (w * y * y).sum() - my**2
            cxy = (w * x * y).sum() - mx * my
            vals.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(vals))


def test_ssim_matches_the_definition():
    rng = np.random.default_rng(0)
    a = rng.random((20, 24))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    assert ssim(a, b) == pytest.approx(_ssim_naive(a, b), abs=1e-10)
    assert ssim(a, a) == pytest.approx(1.0)
    rgb_a, rgb_b = rng.random((16, 16, 3)), rng.random((16, 16, 3))
    assert ssim(rgb_a, rgb_b) == pytest.approx(np.mean([_ssim_naive(rgb_a[..., c], rgb_b[..., c]) for c in range(3)]))
    assert ssim(a, b) > ssim(a, np.clip(a + rng.normal(0, 0.3, a.shape), 0, 1))
