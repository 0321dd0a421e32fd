"""How ``BrainsetRunner`` prepares the assets of the brainsets in a run.

- :mod:`.pool`: the scheduler. One pool per layer of download nodes prepares the
  assets of all their brainsets, interleaved, in rounds that survive dead workers.
- :mod:`.stages`: download and process as two stages streaming into each other.
- :mod:`.deaths`: what a dead worker looks like, per backend, and its cause.
- :mod:`.interrupts`: Ctrl-C and SIGTERM during a run.
- :mod:`.backends`: where the assets run: this machine (loky, threading,
  multiprocessing) or a cluster (Dask, Ray); :mod:`.backends.workers` is the code
  that runs on the workers, with light imports.
"""
