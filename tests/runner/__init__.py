"""Tests of brainsets_kedro.runner: BrainsetRunner and its scheduler."""
