"""The cache of install advice: one file in the user's cache folder, the answers kept per environment fingerprint."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path

from packaging.utils import canonicalize_name

from brainsets_kedro.io.atomic import atomic_write

logger = logging.getLogger(__name__)


def installed_distributions() -> dict[str, importlib_metadata.Distribution]:
    """The distributions installed in this environment, by canonical name."""
    return {
        canonicalize_name(d.metadata["Name"]): d
        for d in importlib_metadata.distributions()
        if d.metadata["Name"]
    }


KEPT_ENVIRONMENTS = 20
"""Environments whose answers the cache keeps (the most recent)."""


def cache_dir() -> Path:
    """Where the project keeps what it computed once for this user: the folder
    ``$BRAINSETS_KEDRO_CACHE_DIR``, else ``brainsets-kedro`` in ``$XDG_CACHE_HOME``
    or ``~/.cache``."""
    if os.environ.get("BRAINSETS_KEDRO_CACHE_DIR"):
        return Path(os.environ["BRAINSETS_KEDRO_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "brainsets-kedro"


def environment_fingerprint() -> str:
    """A hash of what pip's answer depends on: this Python, the distributions
    installed in its environment, and pip's settings in ``PIP_*`` variables."""
    parts = [sys.executable, sys.version, *sorted(_metadata_folders())]
    parts += sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith("PIP_"))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _metadata_folders() -> list[str]:
    """The installed distributions' metadata folders on ``sys.path``, by path
    (``.../numpy-2.1.0.dist-info``): their names carry each one's name and version.
    Listed, not parsed: parsing every distribution's metadata took a third of a
    second in an environment of 500, once per brainset ``kedro brainset import``
    checked."""
    found = []
    for entry in sys.path:
        try:
            with os.scandir(entry or ".") as folder:
                found += [
                    item.path
                    for item in folder
                    if item.name.endswith((".dist-info", ".egg-info"))
                ]
        except OSError:  # a zip file or a folder that is gone
            continue
    return found


def cache_file() -> Path:
    """The file the advice is kept in."""
    return cache_dir() / "install_advice.json"


def read_cache() -> dict:
    """The cache's content; empty when it is missing or damaged (then rebuilt)."""
    try:
        cache = json.loads(cache_file().read_text())
    except (OSError, ValueError):
        cache = {}
    if not isinstance(cache, dict):
        cache = {}
    for part in ("advice", "relaxed"):
        if not isinstance(cache.get(part), dict):
            cache[part] = {}
    return cache


def write_cache(cache: dict) -> None:
    """Write the cache whole or not at all; a folder that cannot be written only
    means the resolver is asked again next time."""
    path = cache_file()
    try:
        with atomic_write(path) as temporary:
            temporary.write_text(json.dumps(cache, indent=1))
    except OSError as error:
        logger.debug("Cannot write %s: %s", path, error)
