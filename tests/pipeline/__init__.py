"""Tests of brainsets_kedro.pipeline: what runs under any Kedro runner."""
