# /// brainset-pipeline
# # pip requirements this brainset needs beyond brainsets-kedro's own, e.g.
# # ["dandi==0.74.0"]. `kedro run` checks them before any work and prints the
# # command that installs the missing ones.
# dependencies = []
# ///
"""Brainset {{ cookiecutter.brainset_id }}: TODO what the data is and where it comes from.

Made by `kedro brainset new {{ cookiecutter.brainset_id }}`; prepare it with

    kedro run --pipeline={{ cookiecutter.brainset_id }}

Its options (the parser below) are parameters under `{{ cookiecutter.brainset_id }}:` in
conf/base/parameters_{{ cookiecutter.brainset_id }}.yml. The steps run as in the brainsets package:
get_manifest once, then download and process for each asset, assets in parallel, each
asset's stdout and stderr in pipeline_logs/<asset_id>.out and .err.

As generated it runs offline: download makes up a small file of spike times instead
of fetching one, so that the brainset runs before its real steps are written.
"""

from __future__ import annotations

from argparse import ArgumentParser, Namespace
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from temporaldata import ArrayDict, Data, IrregularTimeSeries

from brainsets_kedro import BrainsetPipeline

parser = ArgumentParser()
parser.add_argument(
    "--redownload", action="store_true", help="download assets already downloaded"
)
parser.add_argument(
    "--reprocess", action="store_true", help="process assets already processed"
)
# Add options of your own: each is a parameter `{{ cookiecutter.brainset_id }}.<dest>`.


class Pipeline(BrainsetPipeline):
    brainset_id = "{{ cookiecutter.brainset_id }}"
    parser = parser

    @classmethod
    def get_manifest(cls, raw_dir: Path, args: Namespace | None) -> pd.DataFrame:
        """Step 1, the manifest: one row per asset, indexed by asset id.

        Runs once per run, before any download. List the dataset's files here (from
        DANDI, OpenNeuro, an archive's index...), one row each, with what download
        needs in the columns (a URL, a path, a checksum). The asset id names the
        asset's logs and selects it alone (--params="brainsets.only=<asset_id>").
        """
        # TODO: list the real assets. size_bytes is each download's size (None if
        # unknown): the run checks that they fit on the disk before downloading.
        sessions = [f"session_{i:02d}" for i in range(1, 4)]
        return pd.DataFrame(
            {
                "url": [f"https://example.org/{session}.npz" for session in sessions],
                "size_bytes": 32_512,
            },
            index=pd.Index(sessions, name="session_id"),
        )

    def download(self, manifest_item) -> Path:
        """Step 2, download: fetch one asset into self.raw_dir.

        manifest_item is one manifest row as a named tuple: .Index is the asset id,
        each column an attribute (manifest_item.url). What this returns is given to
        process. An exception fails this asset only.
        """
        self.update_status("DOWNLOADING")
        path = self.raw_dir / f"{manifest_item.Index}.npz"
        if path.exists() and not self.args.redownload:
            self.update_status("Already downloaded")
            return path
        # TODO: fetch manifest_item.url instead, with brainsets_kedro.io.download (it
        # resumes, retries, checks the size and checksum, and puts only a complete
        # file at path):
        #     from brainsets_kedro import download
        #     return download(manifest_item.url, path, size=manifest_item.size_bytes)
        rng = np.random.default_rng(sum(map(ord, manifest_item.Index)))
        timestamps = np.sort(rng.uniform(0.0, 60.0, 2000))
        unit_index = rng.integers(0, 16, len(timestamps))
        with self.atomic_write(path) as tmp, open(tmp, "wb") as file:
            np.savez(file, timestamps=timestamps, unit_index=unit_index)
        return path

    def process(self, download_output: Path) -> None:
        """Step 3, process: write self.processed_dir / "<asset_id>.h5".

        Runs once the asset's download has returned, on a worker of its own (the
        download ran elsewhere: download_output is what it returned, so keep it
        picklable, e.g. a path). Read the raw file, build a temporaldata Data
        object, and write it with self.atomic_write, so that a crash never leaves a
        half-written file.
        """
        session_id = download_output.stem
        path = self.processed_dir / f"{session_id}.h5"
        if path.exists() and not self.args.reprocess:
            self.update_status("Already processed")
            return
        self.update_status("Loading")
        raw = np.load(download_output)
        self.update_status("Extracting spikes")
        spikes = IrregularTimeSeries(
            timestamps=raw["timestamps"], unit_index=raw["unit_index"], domain="auto"
        )
        n_units = int(raw["unit_index"].max()) + 1
        data = Data(
            # TODO: describe the brainset: origin_version, source, description...
            brainset=Data(id=self.brainset_id),
            session=Data(id=session_id),
            spikes=spikes,
            units=ArrayDict(id=np.array([f"unit_{i:02d}" for i in range(n_units)])),
            domain=spikes.domain,
        )
        self.update_status("Storing")
        with self.atomic_write(path) as tmp, h5py.File(tmp, "w") as file:
            data.to_hdf5(file)
