"""What runs inside a worker process: the asset job, its isolation and the worker loops; nothing of Kedro, pandas or rich."""
