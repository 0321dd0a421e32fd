"""Kedro glue: project hooks, the lock, logging, start-up, and the ``kedro brainset`` commands."""
