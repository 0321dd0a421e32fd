"""Tests of brainsets_kedro.framework: Kedro glue and the kedro brainset commands."""
