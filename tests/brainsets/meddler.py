"""A brainset whose every asset changes its worker process: it records the state it
finds (working directory, environment, sys.path, logging, a signal handler, umask),
then changes all of it, and leaves two processes running, a child and a daemon
grandchild, whose pids it records."""

import json
import logging
import os
import signal
import subprocess
import sys
from argparse import ArgumentParser
from pathlib import Path

from brainsets_kedro import BrainsetPipeline

parser = ArgumentParser()
parser.add_argument("--n-assets", type=int, default=4)
parser.add_argument("--leave-processes", action="store_true")


def _on_usr1(signum, frame):  # pragma: no cover (never sent)
    pass


def seen_state() -> dict:
    umask = os.umask(0)
    os.umask(umask)
    root = logging.getLogger()
    return {
        "cwd": os.getcwd(),
        "env": os.environ.get("MEDDLER"),
        "path": "/meddler" in sys.path,
        "root_level": root.level,
        "root_handlers": len(root.handlers),
        "usr1": repr(signal.getsignal(signal.SIGUSR1)),
        "umask": umask,
    }


class Pipeline(BrainsetPipeline):
    brainset_id = "meddler"
    parser = parser

    @classmethod
    def get_manifest(cls, raw_dir, args):
        ids = [f"a_{i:02d}" for i in range(args.n_assets)]
        # Here, not at the top: the workers, which never call this, do without pandas.
        import pandas as pd  # noqa: PLC0415

        return pd.DataFrame({"value": range(args.n_assets)}, index=pd.Index(ids))

    def download(self, manifest_item):
        return manifest_item.Index

    def process(self, asset_id):
        record = {"pid": os.getpid(), "state": seen_state()}
        print(f"{asset_id}: processing")  # makes its .out log, with the umask found
        os.chdir(self.raw_dir)
        os.environ["MEDDLER"] = asset_id
        sys.path.insert(0, "/meddler")
        logging.basicConfig(level=logging.DEBUG, force=True)
        signal.signal(signal.SIGUSR1, _on_usr1)
        os.umask(0)
        if self.args.leave_processes:
            child = subprocess.Popen(["sleep", "300"])
            daemon = subprocess.run(
                ["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"],
                capture_output=True,
                text=True,
                check=True,
            )
            record["left"] = [child.pid, int(daemon.stdout)]
        out = Path(self.processed_dir, f"{asset_id}.json")
        out.write_text(json.dumps(record))
