# /// brainset-pipeline
# python-version = "3"
# dependencies = ["pandas>=1.5.3", "h5py"]
# ///
"""A brainset written for the ``brainsets`` package, as its own pipelines are: the
Pipeline subclasses ``brainsets.pipeline.BrainsetPipeline`` (whose ``update_status``
talks to a Ray actor handle), parameters come from a module-level parser, and an inline
metadata block lists what it needs. Nothing in it knows about brainsets_kedro.

Copied into a temporary project as src/brainsets_kedro/pipelines/<id>/pipeline.py.
"""

import json
import os
import sys
import time
from argparse import ArgumentParser, Namespace
from pathlib import Path

import pandas as pd
import ray
from brainsets.pipeline import BrainsetPipeline

parser = ArgumentParser()
parser.add_argument("--redownload", action="store_true")
parser.add_argument("--n-sessions", type=int, default=4)
parser.add_argument("--sleep", type=float, default=0.3)
parser.add_argument("--fail", default="", help="session ids to fail, separated by |")
parser.add_argument(
    "--meet", action="store_true", help="process waits for another to start (60 s)"
)


class Pipeline(BrainsetPipeline):
    brainset_id = "upstream_style"
    parser = parser

    @classmethod
    def get_manifest(cls, raw_dir: Path, args: Namespace | None) -> pd.DataFrame:
        sessions = [f"sess_{i:02d}" for i in range(args.n_sessions)]
        manifest = pd.DataFrame(
            {"session_id": sessions, "n_spikes": range(10, 10 + len(sessions))}
        )
        return manifest.set_index("session_id")

    def download(self, manifest_item):
        self.update_status("DOWNLOADING")
        print(f"downloading {manifest_item.Index}")
        time.sleep(self.args.sleep)
        path = self.raw_dir / f"{manifest_item.Index}.json"
        path.write_text(json.dumps({"n_spikes": manifest_item.n_spikes}))
        return path

    def process(self, download_output):
        self.update_status("Processing")
        session_id = download_output.stem
        print(f"processing {session_id}")
        print(f"a warning about {session_id}", file=sys.stderr)
        if session_id in self.args.fail.split("|"):
            raise RuntimeError(f"{session_id} fails on purpose")
        started = time.time()
        (self.processed_dir / f".{session_id}.started").touch()
        while self.args.meet and time.time() < started + 60:
            others = set(self.processed_dir.glob(".*.started"))
            if others - {self.processed_dir / f".{session_id}.started"}:
                break  # another session is being processed at the same time
            time.sleep(0.02)
        time.sleep(self.args.sleep)
        raw = json.loads(download_output.read_text())
        worker = {
            "pid": os.getpid(),
            "start": started,
            "end": time.time(),
            "n_spikes": raw["n_spikes"],
            "ray_initialized": ray.is_initialized(),
        }
        (self.processed_dir / f"{session_id}.json").write_text(json.dumps(worker))
