"""Data layer: the drive-log model (format v1), its reader/validator/writer, and geometry helpers."""

from .io import FORMAT_VERSION, LogError, Problem, load_log, log_to_json, parse_log, validate_log, write_log
from .lidar_model import LidarSensor, SweepLayout
from .model import Actor, DriveLog, Frame, Intrinsics, LidarSweep, Track
from .safe_paths import safe_join, safe_name

__all__ = [
    "FORMAT_VERSION", "LogError", "Problem", "load_log", "log_to_json", "parse_log", "validate_log", "write_log",
    "Actor", "DriveLog", "Frame", "Intrinsics", "LidarSweep", "Track", "safe_join", "safe_name",
    "LidarSensor", "SweepLayout",
]
