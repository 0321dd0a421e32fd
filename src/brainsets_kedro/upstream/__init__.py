"""Pipelines written for torch_brain or brainsets: detection, static reading, sibling modules, install checks."""
