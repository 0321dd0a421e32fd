"""A brainset for the card and size tests: small temporaldata sessions, a manifest
with a size_bytes column, and faults on request.

Copied into a temporary project as src/brainsets_kedro/pipelines/sized/pipeline.py.
"""

from argparse import ArgumentParser

import h5py
import numpy as np
from temporaldata import ArrayDict, Data, IrregularTimeSeries

from brainsets_kedro import BrainsetPipeline

parser = ArgumentParser()
parser.add_argument("--n-assets", type=int, default=3)
parser.add_argument("--size-bytes", type=int, default=1000, help="each asset's size")
parser.add_argument("--fail", default="", help="asset ids whose process fails, by |")
parser.add_argument("--corrupt", default="", help="asset ids written as non-HDF5, by |")


class Pipeline(BrainsetPipeline):
    brainset_id = "sized"
    parser = parser

    @classmethod
    def get_manifest(cls, raw_dir, args):
        ids = [f"s_{i:02d}" for i in range(args.n_assets)]
        # Here, not at the top: the workers, which never call this, do without pandas.
        import pandas as pd  # noqa: PLC0415

        return pd.DataFrame(
            {"n_units": [3 + i for i in range(args.n_assets)]},
            index=pd.Index(ids, name="session_id"),
        ).assign(size_bytes=args.size_bytes)

    def download(self, manifest_item):
        path = self.raw_dir / f"{manifest_item.Index}.npy"
        np.save(path, np.arange(manifest_item.n_units))
        return path

    def process(self, download_output):
        session_id = download_output.stem
        if session_id in self.args.fail.split("|"):
            raise RuntimeError(f"{session_id} fails on purpose")
        path = self.processed_dir / f"{session_id}.h5"
        if session_id in self.args.corrupt.split("|"):
            path.write_text("not an HDF5 file")
            return
        n_units = len(np.load(download_output))
        timestamps = np.linspace(10.0, 70.0, 100 * n_units)  # a minute from 10 s
        data = Data(
            session=Data(id=session_id),
            spikes=IrregularTimeSeries(
                timestamps=timestamps,
                unit_index=np.arange(len(timestamps)) % n_units,
                domain="auto",
            ),
            units=ArrayDict(id=np.array([f"u{i}" for i in range(n_units)])),
            domain="auto",
        )
        with self.atomic_write(path) as tmp, h5py.File(tmp, "w") as file:
            data.to_hdf5(file)
