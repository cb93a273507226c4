"""Outputs of composed scenarios: dataset export in the simrecon, KITTI, COCO and nerfstudio layouts
(docs/export.md) and the golden-render regression runner built on it (``regress``, docs/scenarios.md)."""

from .exporter import ExportResult, compose, export, verify
from .formats import FORMATS

__all__ = ["ExportResult", "FORMATS", "compose", "export", "verify"]
