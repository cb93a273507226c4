"""A corpus of broken and hostile inputs for every file the CLI reads, and the command that reads each.

``build(root, log, scene)`` writes the cases under ``root`` from a valid drive log ``log`` and a valid
scene folder ``scene`` (or None: the cases that need one are left out) and returns them. Every case
must end with exit code 2, its error naming the file (and the field where there is one), no traceback,
nothing written outside its own folder and no output folder left behind. ``tests/test_fuzz.py`` runs
them; ``python tests/fuzz_corpus.py LOG [SCENE] OUT`` writes the corpus for a look by hand.

The cases are generated, not stored: each is a mutation of a valid file (a field set to a hostile value,
the file cut short, replaced by garbage, nested too deep) so that the corpus follows the formats as
they change.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml


@dataclass
class Case:
    """One hostile input and the command that reads it."""

    id: str
    argv: list[str]  # simrecon arguments
    file: str  # what the error must name: the file (or a distinctive part of its path)
    field: str = ""  # ... and this field (a substring of the error), where the file has fields
    out: str | None = None  # the output folder the command was given: must not exist afterwards
    lines: int | None = 1  # error lines expected (None: a validator that lists every problem)


# ---------------------------------------------------------------------------------------------- helpers
class _Nan:
    """Placeholder written as a bare NaN / Infinity / a 400-digit integer into JSON text."""

    def __init__(self, text: str):
        self.text = text


def _dumps(doc: Any) -> str:
    """JSON text where _Nan placeholders appear verbatim (NaN, Infinity, 10**400 ...)."""
    marks: dict[str, str] = {}

    def sub(x):
        if isinstance(x, _Nan):
            key = f"@@{len(marks)}@@"
            marks[key] = x.text
            return key
        if isinstance(x, dict):
            return {k: sub(v) for k, v in x.items()}
        if isinstance(x, list):
            return [sub(v) for v in x]
        return x

    text = json.dumps(sub(doc), indent=1)
    for key, raw in marks.items():
        text = text.replace(f'"{key}"', raw)
    return text


def _set(doc: Any, path: str, value: Any) -> Any:
    """A copy of ``doc`` with ``path`` (``a.b[0].c``; ``-`` as the value deletes the key) set."""
    doc = copy.deepcopy(doc)
    parts = [p for chunk in path.replace("]", "").split(".") for p in chunk.split("[")]
    node = doc
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node[p]
    last = parts[-1]
    key: Any = int(last) if isinstance(node, list) else last
    if value == "-":
        del node[key]
    else:
        node[key] = value
    return doc


HUGE_INT = _Nan("1" + "0" * 400)
NAN, INF = _Nan("NaN"), _Nan("Infinity")
GARBAGE = bytes(range(256)) * 4
DEEP_JSON = "[" * 100_000
DEEP_YAML = "a: " + "{b: " * 5000 + "1" + "}" * 5000
PYTHON_TAG = "!!python/object/apply:os.system ['touch PWNED']\n"
CLIMB_TO_PASSWD = "../" * 40 + "etc/passwd"  # enough '..' to reach / from any folder the corpus is built in
CLIMB_TO_HOSTNAME = "../" * 40 + "etc/hostname"


def _variants_of_text(name: str, good: str) -> dict[str, bytes]:
    """Whole-file damage that any text format must survive (JSON cut short too; half a YAML file is often
    a valid, shorter one)."""
    cut = {f"{name}-truncated": good[: len(good) // 2].encode()} if name == "json" else {}
    return {f"{name}-empty": b"", f"{name}-garbage": GARBAGE, **cut,
            f"{name}-not-utf8": b"\xff\xfe" + good.encode("utf-16-le")[:200]}


# ---------------------------------------------------------------------------------------------- drive logs
LOG_FIELD_CASES: list[tuple[str, str, Any, str]] = [
    # (id, json path in transforms.json, value, field the error must name)
    ("fl_x-huge-int", "fl_x", HUGE_INT, "fl_x"),
    ("fl_x-nan", "fl_x", NAN, "fl_x"),
    ("fl_x-inf", "fl_x", INF, "fl_x"),
    ("w-1e9", "w", 1_000_000_000, "w"),
    ("w-negative", "w", -5, "w"),
    ("w-string", "w", "wide", "w"),
    ("camera-climbs", "frames[0].camera", "../../../ESCAPED", "frames[0].camera"),
    ("camera-absolute", "frames[0].camera", "/tmp/ESCAPED", "frames[0].camera"),
    ("file_path-climbs", "frames[0].file_path", CLIMB_TO_PASSWD, "frames[0].file_path"),
    ("file_path-absolute", "frames[0].file_path", "/etc/passwd", "frames[0].file_path"),
    ("mask_path-climbs", "frames[0].mask_path", CLIMB_TO_PASSWD, "frames[0].mask_path"),
    ("matrix-shape", "frames[0].transform_matrix", [[1, 0], [0, 1]], "frames[0].transform_matrix"),
    ("matrix-nan", "frames[0].transform_matrix[0][3]", NAN, "frames[0].transform_matrix"),
    ("timestamp-string", "frames[0].timestamp", "noon", "frames[0].timestamp"),
    ("timestamp-huge", "frames[0].timestamp", HUGE_INT, "frames[0].timestamp"),
    ("frames-not-a-list", "frames", {"a": 1}, "frames"),
    ("frames-missing", "frames", "-", "frames"),
]


def _log_cases(root: Path, log: Path) -> list[Case]:
    good_text = (log / "transforms.json").read_text()
    good = json.loads(good_text)
    cases: list[Case] = []

    def variant(cid: str) -> Path:
        d = root / "logs" / cid
        shutil.copytree(log, d, copy_function=os.link)
        return d

    def add(cid: str, d: Path, file: str, fld: str) -> None:
        for cmd in ("validate", "info"):
            cases.append(Case(f"log-{cid}-{cmd}", [cmd, str(d)], file, fld, lines=None if cmd == "validate" else 1))

    for cid, path, value, fld in LOG_FIELD_CASES:
        d = variant(cid)
        os.unlink(d / "transforms.json")
        (d / "transforms.json").write_text(_dumps(_set(good, path, value)))
        add(cid, d, "transforms.json", fld)
    whole = {**_variants_of_text("json", good_text), "json-deep": DEEP_JSON.encode(), "json-list": b"[1, 2]"}
    for cid, data in whole.items():
        d = variant(cid)
        os.unlink(d / "transforms.json")
        (d / "transforms.json").write_bytes(data)
        add(cid, d, "transforms.json", "")
    image = good["frames"][0]["file_path"]
    for cid, damage in (("image-truncated", lambda b: b[: len(b) // 3]), ("image-text", lambda b: b"not a png")):
        d = variant(cid)
        data = (d / image).read_bytes()
        os.unlink(d / image)
        (d / image).write_bytes(damage(data))
        cases.append(Case(f"log-{cid}-validate", ["validate", str(d)], image, "", lines=None))
    return cases


CAPTURE_FIELD_CASES: list[tuple[str, str, Any, str]] = [
    ("mask_path-climbs", "frames[0].mask_path", CLIMB_TO_PASSWD, "frames[0].mask_path"),
    ("file_path-absolute", "frames[0].file_path", "/etc/passwd", "frames[0].file_path"),
    ("file_path-climbs", "frames[0].file_path", CLIMB_TO_HOSTNAME, "frames[0].file_path"),
    ("w-1e9", "w", 1_000_000_000, "w"),
    ("fl_x-huge-int", "fl_x", HUGE_INT, "fl_x"),
    ("matrix-nan", "frames[0].transform_matrix[1][3]", NAN, "frames[0].transform_matrix"),
]


def _capture_cases(root: Path, log: Path) -> list[Case]:
    """nerfstudio captures (``convert nerfstudio``): what a reader links or copies must stay in the capture."""
    src = json.loads((log / "transforms.json").read_text())
    f0 = src["frames"][0]
    good = {"fl_x": 100.0, "fl_y": 100.0, "cx": 80.0, "cy": 48.0, "w": 160, "h": 96,
            "frames": [{"file_path": "images/0.png", "transform_matrix": f0["transform_matrix"]}]}
    texts = {cid: (_dumps(_set(good, path, value)).encode(), fld) for cid, path, value, fld in CAPTURE_FIELD_CASES}
    texts.update({cid: (data, "") for cid, data in {**_variants_of_text("json", json.dumps(good)),
                                                     "json-deep": DEEP_JSON.encode()}.items()})
    cases = []
    for cid, (data, fld) in texts.items():
        d = root / "captures" / cid
        (d / "images").mkdir(parents=True)
        shutil.copyfile(log / f0["file_path"], d / "images" / "0.png")
        (d / "transforms.json").write_bytes(data)
        out = root / "captures" / f"{cid}-log"
        cases.append(Case(f"capture-{cid}", ["convert", "nerfstudio", str(d), str(out)], "transforms.json", fld,
                          out=str(out)))
    return cases


# ---------------------------------------------------------------------------------------------- scenarios
SCENARIO_FIELD_CASES: list[tuple[str, dict, str]] = [
    ("position-nan", {"actors": [{"id": "car_1", "trajectory": [{"t": 0.0, "position": [NAN, 0.0]}]}]},
     "actors[0].trajectory[0].position[0]"),
    ("translate-inf", {"actors": [{"id": "car_1", "translate": [INF, 0.0, 0.0]}]}, "actors[0].translate[0]"),
    ("lateral-nan", {"ego": {"lateral": NAN}}, "ego.lateral"),
    ("rate-1e12", {"time": {"rate": 1.0e12}}, "time.rate"),
    ("rate-negative", {"time": {"rate": -1}}, "time.rate"),
    ("camera-climbs", {"cameras": [{"name": "../../ESCAPED_CAM", "intrinsics": {"w": 32, "h": 24, "hfov_deg": 90},
                                    "mount": {"position": [0, 0, 1.6]}}]}, "cameras[0].name"),
    ("camera-absolute", {"cameras": [{"name": "/tmp/ESCAPED_CAM", "intrinsics": {"w": 32, "h": 24, "hfov_deg": 90},
                                      "mount": {"position": [0, 0, 1.6]}}]}, "cameras[0].name"),
    ("camera-huge", {"cameras": [{"name": "big", "intrinsics": {"w": 10**9, "h": 10**9, "hfov_deg": 90},
                                  "mount": {"position": [0, 0, 1.6]}}]}, "cameras[0].intrinsics.w"),
    ("unknown-key", {"colour": "red"}, "colour"),
    ("wrong-type", {"ego": {"lateral": "one metre"}}, "ego.lateral"),
    ("scene-missing", {"scene": "no/such/log"}, "scene"),
    ("asset-climbs", {"actors": [{"id": "van", "source": "asset:../../../../etc/passwd",
                                  "trajectory": [{"t": 0.0, "position": [10.0, 0.0]}]}]}, "actors[0].source"),
    ("asset-garbage", {"actors": [{"id": "van", "source": "asset:broken.obj",
                                   "trajectory": [{"t": 0.0, "position": [10.0, 0.0]}]}]}, "actors[0].source"),
]


def _yaml_text(doc: dict) -> str:
    text = yaml.safe_dump(json.loads(_dumps(doc).replace("NaN", '"@nan"').replace("Infinity", '"@inf"')),
                          sort_keys=False)
    return text.replace("'@nan'", ".nan").replace("'@inf'", ".inf")


def _scenario_cases(root: Path, log: Path) -> list[Case]:
    base = {"scene": str(log), "cameras": ["front"], "time": {"times": [0.0]}, "visibility": "box"}
    good = _yaml_text(base)
    cases: list[Case] = []

    def add(cid: str, text: bytes, fld: str) -> None:
        d = root / "scenarios" / cid
        d.mkdir(parents=True)
        (d / "scenario.yaml").write_bytes(text)
        (d / "broken.obj").write_bytes(GARBAGE)
        f = d / "scenario.yaml"
        cases.append(Case(f"scenario-{cid}-compose", ["compose", str(f), "-o", str(d / "out")], str(f), fld,
                          out=str(d / "out")))
        cases.append(Case(f"scenario-{cid}-export", ["export", str(f), "--format", "coco", "-o", str(d / "ds")],
                          str(f), fld, out=str(d / "ds")))

    for cid, edit, fld in SCENARIO_FIELD_CASES:
        add(cid, _yaml_text({**base, **edit}).encode(), fld)
    whole = {**_variants_of_text("yaml", good), "yaml-deep": DEEP_YAML.encode(),
             "yaml-python-tag": PYTHON_TAG.encode(), "yaml-list": b"- 1\n- 2\n"}
    for cid, data in whole.items():
        add(cid, data, "")
    return cases


def _suite_cases(root: Path, log: Path) -> list[Case]:
    cases: list[Case] = []
    good_suite = {"scenarios": [{"scenario": "base.yaml"}]}
    edits = {"name-climbs": ({"scenarios": [{"scenario": "base.yaml", "name": "../../ESCAPED_SUITE"}]},
                             "scenarios[0].name"),
             "name-absolute": ({"scenarios": [{"scenario": "base.yaml", "name": "/tmp/ESCAPED_SUITE"}]},
                               "scenarios[0].name"),
             "threshold-nan": ({"thresholds": {"psnr_min": NAN}, **good_suite}, "thresholds.psnr_min"),
             "no-scenarios": ({"scenarios": []}, "scenarios"),
             "unknown-key": ({"colour": 1, **good_suite}, "colour")}
    texts = {cid: (_yaml_text(doc).encode(), fld) for cid, (doc, fld) in edits.items()}
    texts.update({cid: (data, "") for cid, data in {**_variants_of_text("yaml", _yaml_text(good_suite)),
                                                     "yaml-deep": DEEP_YAML.encode(),
                                                     "yaml-python-tag": PYTHON_TAG.encode()}.items()})
    for cid, (data, fld) in texts.items():
        d = root / "suites" / "a" / "b" / cid
        d.mkdir(parents=True)
        (d / "base.yaml").write_text(_yaml_text({"scene": str(log), "cameras": ["front"], "time": {"times": [0.0]}}))
        (d / "suite.yaml").write_bytes(data)
        f = d / "suite.yaml"
        cases.append(Case(f"suite-{cid}", ["regress", str(f), "--update-golden", "-o", str(d / "report")],
                          str(f), fld))
    return cases


# ---------------------------------------------------------------------------------------------- scene inputs
POSES_FIELD_CASES: list[tuple[str, str, Any, str]] = [
    ("w-1e9", "w", 1_000_000_000, "w"),
    ("fl_x-huge-int", "fl_x", HUGE_INT, "fl_x"),
    ("matrix-nan", "frames[0].transform_matrix[0][3]", NAN, "frames[0].transform_matrix"),
    ("file_path-climbs", "frames[0].file_path", "../../ESCAPED", "frames[0].file_path"),
    ("file_path-absolute", "frames[0].file_path", "/tmp/ESCAPED", "frames[0].file_path"),
    ("frames-missing", "frames", "-", "frames"),
]


def _poses_cases(root: Path, scene: Path) -> list[Case]:
    frame = {"file_path": "images/front/0001.png", "camera": "front", "timestamp": 0.0,
             "transform_matrix": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1.6], [0, 0, 0, 1]]}
    good = {"fl_x": 20.0, "fl_y": 20.0, "cx": 16.0, "cy": 12.0, "w": 32, "h": 24, "frames": [frame]}
    texts = {cid: (_dumps(_set(good, path, value)).encode(), fld) for cid, path, value, fld in POSES_FIELD_CASES}
    texts.update({cid: (data, "") for cid, data in {**_variants_of_text("json", json.dumps(good)),
                                                     "json-deep": DEEP_JSON.encode()}.items()})
    cases = []
    for cid, (data, fld) in texts.items():
        d = root / "poses" / cid
        d.mkdir(parents=True)
        (d / "poses.json").write_bytes(data)
        cases.append(Case(f"poses-{cid}", ["render", str(scene), "--poses", str(d / "poses.json"), "-o",
                                           str(d / "out")], str(d / "poses.json"), fld, out=str(d / "out")))
    return cases


class _Payload:
    """A pickle that would run a command when unpickled without weights_only."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _checkpoint_cases(root: Path, scene: Path) -> list[Case]:
    model = (scene / "model.pt").read_bytes()
    damage: dict[str, Callable[[], tuple[str, bytes]]] = {
        "model-empty": lambda: ("model.pt", b""),
        "model-truncated": lambda: ("model.pt", model[: len(model) // 2]),
        "model-garbage": lambda: ("model.pt", GARBAGE),
        "model-pickle-payload": lambda: ("model.pt", pickle.dumps(_Payload())),
        "scene-json-garbage": lambda: ("scene.json", GARBAGE),
        "scene-json-deep": lambda: ("scene.json", DEEP_JSON.encode()),
    }
    cases = []
    for cid, make in damage.items():
        d = root / "scenes" / cid
        shutil.copytree(scene, d)
        name, data = make()
        (d / name).write_bytes(data)
        out = root / "scenes" / f"{cid}-render"
        cases.append(Case(f"scene-{cid}-render", ["render", str(d), "--trajectory", "-o", str(out)],
                          str(d / name), out=str(out)))
        cases.append(Case(f"scene-{cid}-eval", ["eval", str(d)], str(d / name)))
    return cases


def build(root: Path, log: Path, scene: Path | None = None) -> list[Case]:
    """Write every case under ``root`` (which must be empty or absent) and return them."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cases = _log_cases(root, Path(log)) + _capture_cases(root, Path(log)) + _scenario_cases(root, Path(log)) + \
        _suite_cases(root, Path(log))
    if scene is not None:
        cases += _poses_cases(root, Path(scene)) + _checkpoint_cases(root, Path(scene))
    return cases


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: python tests/fuzz_corpus.py LOG [SCENE] OUT")
    built = build(Path(sys.argv[-1]), Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) == 4 else None)
    for c in built:
        print(c.id, "simrecon " + " ".join(c.argv))
