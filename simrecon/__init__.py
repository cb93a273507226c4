"""simrecon: turn drive logs into editable neural scenes and render what was never recorded.

Layers (each imports only those before it):
data -> encoding (kernels) -> fields -> render -> train -> mesh, compose -> export, viewer -> cli.
Importing never compiles kernels and never needs a GPU.
"""

__version__ = "0.1.0"
