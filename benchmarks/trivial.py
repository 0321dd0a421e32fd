"""The benchmark brainset: assets that do nothing, or burn CPU for a while.

Copied into a temporary project as src/brainsets_kedro/pipelines/trivial/pipeline.py.
"""

import time
from argparse import ArgumentParser

import pandas as pd

from brainsets_kedro import BrainsetPipeline

parser = ArgumentParser()
parser.add_argument("--n-assets", type=int, default=100)
parser.add_argument("--cpu-seconds", type=float, default=0.0)
parser.add_argument(
    "--download-seconds", type=float, default=0.0, help="wait in download (network)"
)


def burn(seconds: float) -> None:
    """Busy CPU work for ``seconds`` of process time."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


class Pipeline(BrainsetPipeline):
    brainset_id = "trivial"
    parser = parser

    @classmethod
    def get_manifest(cls, raw_dir, args):
        ids = [f"asset_{i:06d}" for i in range(args.n_assets)]
        return pd.DataFrame({"number": range(args.n_assets)}, index=pd.Index(ids))

    def download(self, manifest_item):
        self.update_status("DOWNLOADING")
        if self.args.download_seconds:  # even sleep(0) hands the GIL over
            time.sleep(self.args.download_seconds)
        return manifest_item.number

    def process(self, download_output):
        self.update_status("Processing")
        burn(self.args.cpu_seconds)
