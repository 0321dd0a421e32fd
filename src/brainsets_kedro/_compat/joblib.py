"""The private APIs of joblib the project uses, in one place.

Each is listed in :data:`CHECKED` with the versions it was checked against; a test
fails, naming this module, if one disappears.
"""

from __future__ import annotations

CHECKED: dict[str, str] = {}
"""Dotted private name -> the versions it was checked against."""

# -- used by runner/ --

CHECKED["joblib._dask.DaskDistributedBackend"] = "checked with joblib 1.6.0"


def dask_distributed_backend() -> type:
    """joblib's Dask backend class, ``joblib._dask.DaskDistributedBackend``, which
    ``runner.backends.dask`` subclasses (to raise a failed batch, and to run on a
    cluster of one worker thread) through its backend interface.

    Returns:
        The class.

    Raises:
        ImportError: distributed (the ``dask`` extra) is not installed.
    """
    # Here, not at the top: joblib._dask imports distributed, optional and heavy.
    from joblib._dask import DaskDistributedBackend  # noqa: PLC0415

    return DaskDistributedBackend
