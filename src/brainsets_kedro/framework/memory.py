"""Arrow's memory allocator for the run's process, chosen before pandas loads Arrow."""

from __future__ import annotations

import os
import sys

ARROW_POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"


def arrow_memory_from_jemalloc() -> None:
    """Have Arrow allocate with jemalloc in this process (and the processes it
    starts), unless ``ARROW_DEFAULT_MEMORY_POOL`` says otherwise. Called from
    ``settings.py``: Arrow reads the variable once, when it is first imported.

    Why: Arrow's default here, mimalloc, keeps much of what a thread freed. A run
    builds its run report, saves it and reads it back (about 80 MB each time with
    100,000 assets); with mimalloc the 100,000-asset benchmark's peak was about
    50 MB higher and its run about 10% slower. jemalloc ships in Arrow's Linux
    wheels; elsewhere Arrow keeps its default (it warns of a pool it lacks).
    """
    if sys.platform == "linux" and "pyarrow" not in sys.modules:
        os.environ.setdefault(ARROW_POOL_VARIABLE, "jemalloc")
