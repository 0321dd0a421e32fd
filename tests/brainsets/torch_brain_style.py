# /// brainset-pipeline
# python-version = "3"
# dependencies = ["h5py"]
# ///
"""A brainset written for ``torch_brain``, as its shipped pipelines are: the Pipeline
subclasses ``torch_brain.pipeline.BrainsetPipeline`` (whose ``update_status`` talks to
a Ray actor handle), the data classes are ``torch_brain.data``, parameters come from a
module-level parser. Nothing in it knows about brainsets_kedro.

Copied into a temporary project as src/brainsets_kedro/pipelines/<id>/pipeline.py, and
run by torch_brain's own runner for comparison.
"""

from argparse import ArgumentParser, Namespace
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from torch_brain.data import (
    BrainsetDescription,
    Data,
    IrregularTimeSeries,
    SessionDescription,
)
from torch_brain.pipeline import BrainsetPipeline

parser = ArgumentParser()
parser.add_argument("--n-sessions", type=int, default=3)
parser.add_argument("--n-spikes", type=int, default=50)


class Pipeline(BrainsetPipeline):
    brainset_id = "torch_brain_style"
    parser = parser

    @classmethod
    def get_manifest(cls, raw_dir: Path, args: Namespace | None) -> pd.DataFrame:
        sessions = [f"sess_{i:02d}" for i in range(args.n_sessions)]
        return pd.DataFrame({"seed": range(len(sessions))}, index=sessions)

    def download(self, manifest_item):
        self.update_status("DOWNLOADING")
        rng = np.random.default_rng(manifest_item.seed)
        path = self.raw_dir / f"{manifest_item.Index}.npy"
        np.save(path, np.sort(rng.uniform(0, 10, self.args.n_spikes)))
        return path

    def process(self, download_output):
        self.update_status("Processing")
        session_id = download_output.stem
        timestamps = np.load(download_output)
        spikes = IrregularTimeSeries(
            timestamps=timestamps,
            unit_index=np.arange(len(timestamps)) % 4,
            domain="auto",
        )
        data = Data(
            brainset=BrainsetDescription(
                id=self.brainset_id,
                origin_version="0",
                derived_version="0",
                source="made up",
                description="spike times drawn for a test",
            ),
            session=SessionDescription(id=session_id),
            spikes=spikes,
            domain=spikes.domain,
        )
        with h5py.File(self.processed_dir / f"{session_id}.h5", "w") as file:
            data.to_hdf5(file)
