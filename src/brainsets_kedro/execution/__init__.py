"""How ``BrainsetRunner`` prepares the assets of the brainsets in a run.

- :mod:`.pool`: one pool per layer of download nodes prepares the assets of all
  their brainsets, interleaved, and hands each brainset's nodes their results.
- :mod:`.scheduler`: the driver's event-driven scheduler for this machine's workers
  (:mod:`.slots`: a worker process or thread; :mod:`.local_worker`: the loop a
  worker process runs), with the watchdog of stage timeouts and deaths.
- :mod:`.deaths`: what a dead worker looks like, per backend, and its cause.
- :mod:`.interrupts`: Ctrl-C and SIGTERM during a run.
- :mod:`.backends`: where the assets run: this machine (loky, threading,
  multiprocessing) or a cluster (Dask, Ray); :mod:`.backends.workers` is the code
  that runs on a cluster's workers, with light imports.
"""
