"""Release regression of driving policies (``simrecon drive-suite``) on the exact synthetic street: a planted
regression (a policy that brakes late) fails with exactly its cases and metrics named, the same policy against
itself passes, gates apply without a baseline, a broken case does not stop the others, bad suites exit 2."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from simrecon.cli.main import main
from simrecon.export.drive_suite import drive_suite
from simrecon.synth import SynthConfig, generate

STREET = SynthConfig(seconds=3.0, width=32, height=24, seed=0, lidar_beams=4, lidar_azimuths=32, ground_truth=False,
                     antialias=1)
LEAD = {"id": "lead_car", "source": "car_1", "trajectory": [{"t": 0.0, "position": [14.0, -1.75]},
                                                             {"t": 2.9, "position": [22.7, -1.75]}]}  # 3 m/s ahead
LATE_BRAKER = """
from simrecon.sim.policies import LaneFollow, PolicyConfig


class LateBraker(LaneFollow):  # lane-follow, but it keeps a 0.2 s headway and brakes hard at the last moment
    def __init__(self):
        super().__init__(PolicyConfig(idm_headway=0.2, idm_min_gap=0.3, idm_comfort_brake=6.0))
"""


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("drive_suite")
    generate(root / "street", STREET)
    for name, actors in (("free", []), ("lead", [LEAD])):
        (root / f"{name}.yaml").write_text(yaml.safe_dump({"scene": "street", "cameras": ["front"],
                                                          "actors": actors}, sort_keys=False))
    (root / "late.py").write_text(LATE_BRAKER)
    return root


def write_suite(root: Path, name: str = "suite.yaml", **doc) -> Path:
    doc = {"name": "release", "scenarios": [{"scenario": "free.yaml"}, {
        "scenario": "lead.yaml", "vary": {"actors[0].trajectory[1].position": [[22.7, -1.75], [17.0, -1.75]]}}],
        **doc}
    path = root / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def cli(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_policy_that_brakes_late_fails_with_its_cases_and_metrics_named(capsys, suite_dir, tmp_path):
    out = tmp_path / "report"
    code, _, err = cli(capsys, "drive-suite", write_suite(suite_dir), "--policy", f"{suite_dir}/late.py:LateBraker",
                       "--baseline", "lane-follow", "-o", out)
    assert code == 1 and "REGRESSION lead-1" in err and "REGRESSION lead-2" in err and "free" not in err
    summary = json.loads((out / "summary.json").read_text())
    cases = {c["name"]: c for c in summary["cases"]}
    assert list(cases) == ["free", "lead-1", "lead-2"] and not summary["passed"]
    assert cases["free"]["passed"] and cases["free"]["regressions"] == []
    for name in ("lead-1", "lead-2"):  # closer to the lead than the baseline ever gets, so a lower score
        assert {r["metric"] for r in cases[name]["regressions"]} == {"min_ttc", "score"}, cases[name]
        ttc = next(r for r in cases[name]["regressions"] if r["metric"] == "min_ttc")
        assert ttc["candidate"] < ttc["baseline"] - 0.25 and ttc["candidate"] == cases[name]["candidate"]["min_ttc"]
    assert cases["lead-2"]["variation"] == {"actors[0].trajectory[1].position": [17.0, -1.75]}
    suite = ET.parse(out / "junit.xml").getroot().find("testsuite")
    assert suite.get("tests") == "3" and suite.get("failures") == "2"
    failed = {tc.get("name"): tc.find("failure").get("message") for tc in suite.iter("testcase")
              if tc.find("failure") is not None}
    assert set(failed) == {"lead-1", "lead-2"} and failed["lead-1"].startswith("score:")
    for who in ("candidate", "baseline"):
        for name in cases:
            assert (out / "runs" / who / name / "trajectory.json").is_file()
    page = (out / "report.html").read_text()
    assert "FAILED" in page and page.count("<svg") == 3 and "late.py:LateBraker" in page


def test_the_same_policy_against_itself_passes(capsys, suite_dir, tmp_path):
    code, _, err = cli(capsys, "drive-suite", write_suite(suite_dir), "--policy", "lane-follow", "--baseline",
                       "lane-follow", "-o", tmp_path / "r")
    assert code == 0 and "PASSED: 3 of 3" in err


def test_gates_without_a_baseline(suite_dir, tmp_path):
    path = write_suite(suite_dir, "gates.yaml", gates={"collision": False, "route_completion": 0.9})
    result = drive_suite(path, "replay", tmp_path / "r")  # replay runs into the slow car in both variations
    by = {c.name: c for c in result.cases}
    assert by["free"].passed and result.baseline is None
    for name in ("lead-1", "lead-2"):
        # the collision ends the episode short of the route's end: both gates fail
        assert {r.metric for r in by[name].regressions} == {"collision", "route_completion"}, by[name].regressions
        assert by[name].candidate.collision_actor == "lead_car"


def test_a_case_that_cannot_run_is_an_error_and_the_others_go_on(suite_dir, tmp_path):
    (suite_dir / "ghost.yaml").write_text(yaml.safe_dump({"scene": "street", "actors": [{"id": "ghost", "remove":
                                                                                        True}]}))
    path = suite_dir / "broken.yaml"
    path.write_text(yaml.safe_dump({"scenarios": [{"scenario": "ghost.yaml"}, {"scenario": "free.yaml"}]}))
    result = drive_suite(path, "lane-follow", tmp_path / "r")
    ghost, free = result.cases
    assert ghost.error and "ghost" in ghost.error and free.passed and not result.passed


@pytest.mark.parametrize("doc, message", [
    ({"tolerances": {"speed": 1}}, "tolerances.speed: unknown metric"),
    ({"gates": {"collision": 0.5}}, "gates.collision: a flag's gate is true"),
    ({"tolerances": {"score": -1}}, "tolerances.score: expected a number >= 0"),
    ({"scenarios": [{"scenario": "lead.yaml", "vary": {"actors[3].time_offset": [1]}}]},
     "scenarios[0].vary.actors[3].time_offset: the scenario has no item 3"),
    ({"scenarios": [{"scenario": "lead.yaml", "vary": {"actors[0]..x": [1]}}]}, "expected a key path"),
    ({"scenarios": [{"scenario": "missing.yaml"}]}, "no such scenario file"),
    ({"set": {"world.dtt": 0.1}}, "no such setting 'world.dtt'"),
    ({"colour": 1}, "colour: unknown key"),
    # case names become folders (runs/WHO/NAME, frames/NAME): one plain path component only
    ({"scenarios": [{"scenario": "free.yaml", "name": "../escape"}]}, "scenarios[0].name"),
    ({"scenarios": [{"scenario": "free.yaml", "name": "/abs"}]}, "scenarios[0].name"),
    ({"perception": [{"scenario": "free.yaml", "name": "../escape"}]}, "perception[0].name"),
])
def test_a_bad_suite_exits_2_with_one_line_and_writes_nothing(capsys, suite_dir, tmp_path, doc, message):
    path = write_suite(suite_dir, "bad.yaml", **doc)
    code, _, err = cli(capsys, "drive-suite", path, "--policy", "lane-follow", "-o", tmp_path / "r")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists()


DETECTORS = """
import hashlib, json

TRUTH = json.load(open({truth!r}))  # sha1 of the image -> [[x, y, w, h, category], ...]


def key(image):
    return hashlib.sha1(image.tobytes()).hexdigest()


class Oracle:  # the exact boxes, full confidence
    def detect(self, image):
        return [{{"bbox": b[:4], "score": 1.0, "category": b[4]}} for b in TRUTH.get(key(image), [])]


def sloppy(image):  # the same boxes shifted by 60 % of their width: IoU 0.25 (< 0.5, the lowest COCO threshold)
    return [(b[0] + 0.6 * b[2], b[1], b[2], b[3], 0.9, b[4]) for b in TRUTH.get(key(image), [])]
"""


def detectors(root: Path, scenario: Path) -> Path:
    """A detectors module that knows the scenario's exact boxes (by the image's bytes)."""
    import hashlib

    import numpy as np
    from PIL import Image

    from simrecon.export import export

    ref = root / "ref_coco"
    if not ref.exists():
        export(scenario, "coco", ref)
    ann = json.loads((ref / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in ann["categories"]}
    truth: dict = {}
    for im in ann["images"]:
        digest = hashlib.sha1(np.asarray(Image.open(ref / im["file_name"]).convert("RGB")).tobytes()).hexdigest()
        truth[digest] = [a["bbox"] + [names[a["category_id"]]] for a in ann["annotations"] if a["image_id"] == im["id"]]
    (root / "truth.json").write_text(json.dumps(truth))
    path = root / "detectors.py"
    path.write_text(DETECTORS.format(truth=str(root / "truth.json")))
    assert sum(map(len, truth.values())) > 5  # the street's cars are in view
    return path


def test_perception_entries_compare_two_detectors_on_composed_frames(capsys, suite_dir, tmp_path):
    det = detectors(suite_dir, suite_dir / "free.yaml")
    path = suite_dir / "perception.yaml"
    path.write_text(yaml.safe_dump({"perception": [{"scenario": "free.yaml", "name": "detect"}]}))
    same = drive_suite(path, None, tmp_path / "a", detector=f"{det}:Oracle", baseline_detector=f"{det}:Oracle")
    case = same.cases[0]
    assert same.passed and case.kind == "perception" and case.candidate.map == pytest.approx(1.0)
    assert case.candidate.detections == case.candidate.boxes > 5
    code, _, err = cli(capsys, "drive-suite", path, "--detector", f"{det}:sloppy", "--baseline-detector",
                       f"{det}:Oracle", "-o", tmp_path / "b")
    assert code == 1 and "REGRESSION detect: map: 0" in err
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    worse = {r["metric"] for r in summary["cases"][0]["regressions"]}
    assert worse == {"map", "map50"} and summary["cases"][0]["candidate"]["map"] < 0.01
    assert "perception: mAP 0.000 / 1.000" in (tmp_path / "b" / "report.html").read_text()
    code, _, err = cli(capsys, "drive-suite", path, "-o", tmp_path / "c")
    assert code == 2 and "perception entries need --detector" in err
    code, _, err = cli(capsys, "drive-suite", path, "--detector", f"{det}:nothing", "-o", tmp_path / "c")
    assert code == 2 and "has no attribute 'nothing'" in err and not (tmp_path / "c").exists()
