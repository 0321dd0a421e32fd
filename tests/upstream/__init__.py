"""Tests of brainsets_kedro.upstream: pipelines written for torch_brain or brainsets."""
