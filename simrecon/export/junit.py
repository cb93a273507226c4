"""JUnit XML for CI: one test case per scenario of a suite (``regress``, ``drive-suite``)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class JUnitCase:
    name: str
    seconds: float
    failures: list[str] = field(default_factory=list)  # what failed (the first is the message)
    error: str | None = None  # the case could not run
    details: dict = field(default_factory=dict)  # written as the case's system-out (JSON)


def write_junit(path: Path, tool: str, suite: str, cases: list[JUnitCase]) -> None:
    """``path``: a ``testsuites`` document with one ``testsuite`` named ``suite`` (class names ``tool.suite``)."""
    n_fail = sum(1 for c in cases if c.failures and c.error is None)
    n_err = sum(1 for c in cases if c.error is not None)
    root = ET.Element("testsuites", name=tool, tests=str(len(cases)), failures=str(n_fail), errors=str(n_err))
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)), failures=str(n_fail),
                       errors=str(n_err), time=f"{sum(c.seconds for c in cases):.3f}")
    for c in cases:
        tc = ET.SubElement(ts, "testcase", classname=f"{tool.replace(' ', '.')}.{suite}", name=c.name,
                           time=f"{c.seconds:.3f}")
        if c.error is not None:
            ET.SubElement(tc, "error", message=c.error, type="error").text = c.error
        elif c.failures:
            ET.SubElement(tc, "failure", message=c.failures[0], type="regression").text = "\n".join(c.failures)
        ET.SubElement(tc, "system-out").text = json.dumps(c.details, default=str)
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
