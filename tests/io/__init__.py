"""Tests of brainsets_kedro.io: files on disk."""
