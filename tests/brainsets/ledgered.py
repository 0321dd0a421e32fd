"""A brainset written as torch_brain 0.2.1's pipelines are, for the ledger tests.

Its ``process`` writes its ``.h5`` with ``h5py.File(path, "w")`` straight to the
final path, one dataset after another, and skips an asset whose output exists unless
``--reprocess``; its ``download`` skips a raw file that exists unless
``--redownload``. Its ``derived_version`` is a literal of the ``BrainsetDescription``
built in ``process``; ``--gain`` changes what it writes. The manifest's ``n_units``
come from ``<raw_dir>/units.json`` when that file exists (a source whose catalog
changed). Each call of ``download`` and ``process`` appends a line to
``<raw_dir>/calls.log``; ``$LEDGERED_WRITE_DELAY`` slows its writes down, and the
download of the asset ``$LEDGERED_HANG_DOWNLOAD`` writes half its raw file, then hangs
(an archive that stalls mid-file, until the run is killed or interrupted).

Copied into a temporary project as src/brainsets_kedro/pipelines/ledgered/pipeline.py.
"""

import json
import os
import time
from argparse import ArgumentParser

import h5py
import numpy as np
from torch_brain.data import BrainsetDescription

from brainsets_kedro import BrainsetPipeline

parser = ArgumentParser()
parser.add_argument("--redownload", action="store_true")
parser.add_argument("--reprocess", action="store_true")
parser.add_argument("--n-sessions", type=int, default=4)
parser.add_argument("--gain", type=float, default=1.0)
parser.add_argument("--n-datasets", type=int, default=20)

N_DATASETS = 20
WRITE_DELAY = float(os.environ.get("LEDGERED_WRITE_DELAY", "0"))
"""Seconds between two datasets: a run slow enough to be killed mid-file."""
HANG_DOWNLOAD = os.environ.get("LEDGERED_HANG_DOWNLOAD", "")


class Pipeline(BrainsetPipeline):
    brainset_id = "ledgered"
    parser = parser

    @classmethod
    def get_manifest(cls, raw_dir, args):
        ids = [f"s{i}" for i in range(args.n_sessions)]
        units = {f"s{i}": 10 + i for i in range(args.n_sessions)}
        catalog = raw_dir / "units.json"
        if catalog.exists():
            units.update(json.loads(catalog.read_text()))
        # Here, not at the top: the workers, which never call this, do without pandas.
        import pandas as pd  # noqa: PLC0415

        return pd.DataFrame(
            {"n_units": [units[i] for i in ids], "size_bytes": 1000},
            index=pd.Index(ids, name="session_id"),
        )

    def _log_call(self, what):
        with open(self.raw_dir / "calls.log", "a") as log:
            log.write(f"{what}\n")

    def download(self, manifest_item):
        self._log_call(f"download {manifest_item.Index}")
        path = self.raw_dir / f"{manifest_item.Index}.npy"
        if not path.exists() or self.args.redownload:
            np.save(path, np.arange(manifest_item.n_units))
            if manifest_item.Index == HANG_DOWNLOAD:
                data = path.read_bytes()
                path.write_bytes(data[: len(data) // 2])
                while True:  # short sleeps: a thread's interrupt comes between them
                    time.sleep(0.05)
        return path

    def process(self, download_output):
        session_id = download_output.stem
        self._log_call(f"process {session_id}")
        store_path = self.processed_dir / f"{session_id}.h5"
        if store_path.exists() and not self.args.reprocess:
            self.update_status("Already Processed")
            return
        description = BrainsetDescription(
            id="ledgered",
            origin_version="0.0.0",
            derived_version="1.0.0",
            source="tests",
            description="A brainset in torch_brain's style.",
        )
        units = np.load(download_output)
        with h5py.File(store_path, "w") as file:
            file.attrs["derived_version"] = description.derived_version
            file.attrs["gain"] = self.args.gain
            for i in range(self.args.n_datasets):
                file.create_dataset(f"d{i:02d}", data=units * self.args.gain)
                file.flush()
                time.sleep(WRITE_DELAY)
