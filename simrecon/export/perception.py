"""Open-loop perception in drive suites: a detector run on a scenario's composed frames, scored against the frames'
exact 2D boxes with COCO mAP (pycocotools), so two releases of a detector are compared on edits that never
happened (docs/simulation.md, "Perception entries").

A detector is ``module:attr`` or ``file.py:attr``: a callable ``image -> detections``, or an object (a class is
instantiated without arguments) with ``detect(image)``. ``image``: uint8 [H, W, 3] RGB. Detections: a list of
``{"bbox": [x, y, w, h], "score": s, "category": name or id}`` (pixels, COCO's convention; categories as in the
COCO export: car, truck, bus, pedestrian, cyclist, other) or tuples ``(x, y, w, h, score, category)``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from ..sim.policies import load_attr

Detector = Callable[[np.ndarray], Any]


@dataclass
class PerceptionMetrics:
    """A detector's scores on one composed scenario."""

    map: float  # COCO AP averaged over IoU 0.50:0.95 (0 without a detection)
    map50: float  # AP at IoU 0.50
    images: int
    boxes: int  # ground-truth boxes
    detections: int

    def to_json(self) -> dict:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def load_detector(spec: str) -> Detector:
    """The detector ``spec`` names (see the module docstring); a one-line ValueError otherwise."""
    obj = load_attr(str(spec).strip(), "--detector", "module:attr or file.py:attr")
    fn = obj.detect if callable(getattr(obj, "detect", None)) else obj
    if not callable(fn):
        raise ValueError(f"--detector {spec}: neither callable nor has a detect(image) method")
    return fn


def _one(item: Any, image_id: int, categories: dict[str, int]) -> dict:
    if isinstance(item, dict):
        box, score, cat = item.get("bbox"), item.get("score"), item.get("category")
    elif isinstance(item, (list, tuple)) and len(item) == 6:
        box, score, cat = list(item[:4]), item[4], item[5]
    else:
        raise ValueError(f"a detection is not a dict with bbox/score/category nor (x, y, w, h, score, category): "
                         f"{item!r}"[:200])
    try:
        box = [float(v) for v in box]
        score = float(score)
    except (TypeError, ValueError):
        raise ValueError(f"a detection's bbox or score is not numbers: {item!r}"[:200]) from None
    if len(box) != 4 or not all(math.isfinite(v) for v in box + [score]) or box[2] < 0 or box[3] < 0:
        raise ValueError(f"a detection's bbox must be 4 finite numbers with w, h >= 0: {item!r}"[:200])
    cid = categories.get(cat) if isinstance(cat, str) else (int(cat) if cat in categories.values() else None)
    if cid is None:
        raise ValueError(f"unknown category {cat!r}; categories: {', '.join(categories)}")
    return {"image_id": image_id, "bbox": box, "score": score, "category_id": cid}


def detections_of(detector: Detector, dataset: Path) -> list[dict]:
    """The detector's detections on every image of a COCO export ``dataset``, in COCO result form. A detector that
    raises or answers badly is a ValueError saying which image."""
    ann = json.loads((dataset / "annotations.json").read_text())
    categories = {c["name"]: c["id"] for c in ann["categories"]}
    out = []
    for im in ann["images"]:
        with Image.open(dataset / im["file_name"]) as f:
            rgb = np.asarray(f.convert("RGB"))
        try:
            raw = detector(rgb)
        except Exception as exc:  # noqa: BLE001 - user code may raise anything
            first = (str(exc).splitlines() or [""])[0]
            raise ValueError(f"the detector raised on {im['file_name']}: {type(exc).__name__}: {first}"[:300]) from None
        try:
            out += [_one(item, im["id"], categories) for item in (raw or [])]
        except (ValueError, TypeError) as exc:
            raise ValueError(f"the detector's answer on {im['file_name']}: {exc}") from None
    return out


def coco_map(dataset: Path, detections: list[dict]) -> PerceptionMetrics:
    """COCO box AP of ``detections`` against the export's annotations (pycocotools; its printing silenced)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(dataset / "annotations.json"))
        n_img, n_box = len(gt.getImgIds()), len(gt.getAnnIds())
        if not detections or not n_box:
            return PerceptionMetrics(0.0, 0.0, n_img, n_box, len(detections))
        ev = COCOeval(gt, gt.loadRes(detections), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    ap, ap50 = (max(0.0, float(v)) for v in ev.stats[:2])  # -1: no ground truth in a bucket
    return PerceptionMetrics(ap, ap50, n_img, n_box, len(detections))
