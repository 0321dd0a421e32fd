"""Tests of brainsets_kedro.worker: what runs in a worker."""
