"""Scenario composer: scenario files, rendering through the RenderableScene contract, labels and metrics
(docs/scenarios.md). The regression runner that uses it is ``simrecon.export.regress``."""

from .composer import ComposedFrame, composition, render_frame
from .labels import SEMANTIC_CLASSES, semantic_id
from .scenario import Plan, ScenarioError, load_scenario, parse_scenario
from .scenes import open_scene

__all__ = ["ComposedFrame", "Plan", "SEMANTIC_CLASSES", "ScenarioError", "composition", "load_scenario",
           "open_scene", "parse_scenario", "render_frame", "semantic_id"]
