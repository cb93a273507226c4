"""Constants shared by tests (imported as a top-level module: pytest puts tests/ on sys.path)."""

from simrecon.synth import SynthConfig

# 5 timestamps at 160x96: every synth-based test runs on this in a few seconds.
SMALL = SynthConfig(seconds=0.5, width=160, height=96, seed=0, lidar_azimuths=512)
