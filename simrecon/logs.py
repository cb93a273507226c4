"""Library logging: one named logger per module under ``simrecon``; the CLI decides where it goes."""

from __future__ import annotations

import logging


def get_logger(name: str) -> logging.Logger:
    """Logger for a simrecon module (``name`` is usually ``__name__``)."""
    return logging.getLogger(name if name.startswith("simrecon") else f"simrecon.{name}")
