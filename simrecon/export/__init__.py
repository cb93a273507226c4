"""Dataset export of composed scenarios: simrecon, KITTI, COCO and nerfstudio layouts (docs/export.md)."""

from .exporter import ExportResult, compose, export, verify
from .formats import FORMATS

__all__ = ["ExportResult", "FORMATS", "compose", "export", "verify"]
