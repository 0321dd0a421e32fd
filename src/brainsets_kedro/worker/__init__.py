"""What runs inside a worker: the asset job, its statuses, output capture, timeouts, isolation and the worker loops; nothing of Kedro, pandas or rich."""
