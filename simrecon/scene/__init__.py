"""Reconstructed scenes: load a scene folder, render it (RenderableScene), evaluate it."""

from .neural import NeuralScene, load_scene

__all__ = ["NeuralScene", "load_scene"]
