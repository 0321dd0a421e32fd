"""A tiny brainset for tests: text files in, text files out, failures on request.

Copied into a temporary project as src/brainsets_kedro/pipelines/toy/pipeline.py.
"""

import json
import os
import threading
import time
from argparse import ArgumentParser

import pandas as pd

from brainsets_kedro import BrainsetPipeline

parser = ArgumentParser()
parser.add_argument("--n-assets", type=int, default=3)
parser.add_argument("--fail", default="", help="asset ids to fail, separated by |")
parser.add_argument("--fail-stage", choices=["download", "process"], default="process")
parser.add_argument("--sleep", type=float, default=0.0, help="seconds per stage")
parser.add_argument("--unreachable", action="store_true", help="get_manifest fails")


class Pipeline(BrainsetPipeline):
    brainset_id = "toy"
    parser = parser

    @classmethod
    def get_manifest(cls, raw_dir, args):
        if args.unreachable:
            raise ConnectionError(f"the archive of {cls.brainset_id} is unreachable")
        ids = [f"a_{i:02d}" for i in range(args.n_assets)]
        return pd.DataFrame({"value": range(args.n_assets)}, index=pd.Index(ids))

    def download(self, manifest_item):
        self.update_status("DOWNLOADING")
        print(f"downloading {manifest_item.Index}")
        time.sleep(self.args.sleep)
        self._maybe_fail(manifest_item.Index, "download")
        path = self.raw_dir / f"{manifest_item.Index}.txt"
        path.write_text(str(manifest_item.value))
        return path

    def process(self, download_output):
        self.update_status("Processing")
        asset_id = download_output.stem
        print(f"processing {asset_id}")
        self._maybe_fail(asset_id, "process")
        started = time.time()
        time.sleep(self.args.sleep)
        value = int(download_output.read_text())
        (self.processed_dir / f"{asset_id}.txt").write_text(str(value * 10))
        worker = {
            "pid": os.getpid(),
            "thread": threading.get_ident(),
            "instance": id(self),
            "start": started,
        }
        (self.processed_dir / f"{asset_id}.json").write_text(json.dumps(worker))

    def _maybe_fail(self, asset_id, stage):
        if asset_id in self.args.fail.split("|") and self.args.fail_stage == stage:
            raise RuntimeError(f"{asset_id} fails on purpose in {stage}")
