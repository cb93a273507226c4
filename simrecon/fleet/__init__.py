"""Many drive logs through the whole pipeline (docs/fleet.md): a fleet spec names the logs and the stages
(convert, validate, reconstruct, eval, mesh, lidar, compose, export, regress, drive, drive-suite); the runner
takes every log through them on Ray (embedded, or a cluster by address) or in this process, with retries, a
manifest, resume and a summary."""

from .executors import LocalExecutor, RayConfig, RayExecutor, ray_available
from .runner import FleetEvent, RunOptions, run_fleet
from .spec import FleetSpec, LogSpec, Resources, StageSpec, load_spec, parse_spec
from .stages import StageError, StageTask
from .state import Manifest, StageFigures, read_manifest
from .summary import headline, markdown, rows
from .task import StageOutcome, execute

__all__ = ["FleetEvent", "FleetSpec", "LocalExecutor", "LogSpec", "Manifest", "RayConfig", "RayExecutor",
           "Resources", "RunOptions", "StageError", "StageFigures", "StageOutcome", "StageSpec", "StageTask",
           "execute", "headline", "load_spec", "markdown", "parse_spec", "ray_available", "read_manifest", "rows",
           "run_fleet"]
