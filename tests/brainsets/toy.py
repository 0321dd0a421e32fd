"""A tiny brainset for tests: text files in, text files out, failures on request.

Copied into a temporary project as src/brainsets_kedro/pipelines/toy/pipeline.py.
"""

import ctypes
import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
from argparse import ArgumentParser
from pathlib import Path

from brainsets_kedro import BrainsetPipeline
from brainsets_kedro.worker.lifecycle import exit_without_final_collection


def process_started_at() -> float:
    """When this process started, as a Unix time to 1/100 s (Linux's /proc)."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    since_boot = int(fields[19]) / os.sysconf("SC_CLK_TCK")
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return time.time() - (uptime - since_boot)


parser = ArgumentParser()
parser.add_argument("--n-assets", type=int, default=3)
parser.add_argument("--fail", default="", help="asset ids to fail, separated by |")
parser.add_argument("--fail-stage", choices=["download", "process"], default="process")
parser.add_argument("--sleep", type=float, default=0.0, help="seconds per stage")
parser.add_argument("--unreachable", action="store_true", help="get_manifest fails")
parser.add_argument("--hang", default="", help="asset ids whose process hangs, by |")
parser.add_argument(
    "--hang-download", default="", help="asset ids whose download hangs, by |"
)
parser.add_argument("--flaky", default="", help="asset ids whose download fails twice")
parser.add_argument("--die", default="", help="asset ids whose worker is killed, by |")
parser.add_argument("--exit", default="", help="asset ids whose worker exits, by |")
parser.add_argument(
    "--sys-exit", default="", help="asset ids calling sys.exit(3), by |"
)
parser.add_argument(
    "--interrupt", default="", help="asset ids raising KeyboardInterrupt, by |"
)
parser.add_argument(
    "--full-disk", default="", help="asset ids whose .err is on a full disk, by |"
)
parser.add_argument("--manifest-sleep", type=float, default=0.0)
parser.add_argument(
    "--wait-for", default="", help="process waits until this file exists (60 s at most)"
)
parser.add_argument(
    "--unpicklable", default="", help="asset ids whose download returns a lock too"
)
parser.add_argument("--long-id", action="store_true", help="a_00's id: 300 chars")
parser.add_argument("--print-bytes", type=int, default=0, help="bytes to print")
parser.add_argument(
    "--fd-output", action="store_true", help="write to fds 1 and 2, and a subprocess"
)
parser.add_argument("--fd-download", action="store_true", help="the same, in download")
parser.add_argument(
    "--block-download", default="", help="asset ids whose download blocks in a call"
)
parser.add_argument(
    "--deadlock", default="", help="asset ids whose process deadlocks in C, by |"
)
parser.add_argument(
    "--stop", default="", help="asset ids whose process SIGSTOPs its worker, by |"
)
parser.add_argument(
    "--block-alarm", default="", help="asset ids whose process blocks SIGALRM, by |"
)
parser.add_argument("--download-mb", type=int, default=0, help="MB download returns")
parser.add_argument(
    "--unloadable", default="", help="asset ids whose download output cannot load"
)
parser.add_argument(
    "--spacing", type=float, default=0.0, help="asset i's download waits i * this"
)


def _cannot_load() -> None:
    raise RuntimeError("this object cannot be unpickled")


class Unloadable:
    """Pickles, and raises when unpickled."""

    def __reduce__(self):
        return (_cannot_load, ())


class Pipeline(BrainsetPipeline):
    brainset_id = "toy"
    parser = parser

    @classmethod
    def get_manifest(cls, raw_dir, args):
        if args.unreachable:
            raise ConnectionError(f"the archive of {cls.brainset_id} is unreachable")
        raw_dir.mkdir(parents=True, exist_ok=True)
        (raw_dir / "manifest_made_at").write_text(str(time.time()))
        time.sleep(args.manifest_sleep)
        ids = [f"a_{i:02d}" for i in range(args.n_assets)]
        if args.long_id and ids:
            ids[0] = "a_00" + "x" * 296
        # Here, not at the top: the workers, which never call this, do without pandas.
        import pandas as pd  # noqa: PLC0415

        return pd.DataFrame({"value": range(args.n_assets)}, index=pd.Index(ids))

    def download(self, manifest_item):
        self.update_status("DOWNLOADING")
        print(f"downloading {manifest_item.Index}")
        time.sleep(self.args.sleep + self.args.spacing * manifest_item.value)
        if self.args.fd_download:
            os.write(1, f"fd 1 download of {manifest_item.Index}\n".encode())
            os.write(2, f"fd 2 download of {manifest_item.Index}\n".encode())
            subprocess.run(
                ["echo", f"download subprocess of {manifest_item.Index}"], check=True
            )
        if manifest_item.Index in self.args.block_download.split("|"):
            time.sleep(600)  # one blocking call, as a stalled socket read
        if manifest_item.Index in self.args.hang_download.split("|"):
            for _ in range(6000):  # ten minutes of Python-level waiting
                time.sleep(0.1)
        if manifest_item.Index in self.args.flaky.split("|"):
            attempts = self.raw_dir / f"{manifest_item.Index}.attempts"
            count = int(attempts.read_text()) + 1 if attempts.exists() else 1
            attempts.write_text(str(count))
            if count <= 2:
                raise ConnectionError(f"attempt {count}: connection reset")
        self._maybe_fail(manifest_item.Index, "download")
        path = self.raw_dir / f"{manifest_item.Index}.txt"
        path.write_text(str(manifest_item.value))
        if manifest_item.Index in self.args.unpicklable.split("|"):
            return path, threading.Lock()
        if manifest_item.Index in self.args.unloadable.split("|"):
            return path, Unloadable()
        if self.args.download_mb:
            return path, bytes(self.args.download_mb << 20)
        return path

    def process(self, download_output):
        self.update_status("Processing")
        if isinstance(download_output, tuple):  # --unpicklable
            download_output = download_output[0]
        asset_id = download_output.stem
        print(f"processing {asset_id}")
        if self.args.fd_output:
            os.write(1, f"fd 1 of {asset_id}\n".encode())
            os.write(2, f"fd 2 of {asset_id}\n".encode())
            subprocess.run(["echo", f"subprocess of {asset_id}"], check=True)
        self._maybe_fail(asset_id, "process")
        self._misbehave(asset_id)
        if asset_id in self.args.full_disk.split("|"):
            err = self.processed_dir / "pipeline_logs" / f"{asset_id}.err"
            err.unlink(missing_ok=True)
            err.symlink_to("/dev/full")
            raise RuntimeError(f"{asset_id} fails with its .err on a full disk")
        if self.args.print_bytes:
            print("x" * self.args.print_bytes)
        started = time.time()
        time.sleep(self.args.sleep)
        if self.args.wait_for:
            deadline = time.monotonic() + 60
            while (
                not os.path.exists(self.args.wait_for) and time.monotonic() < deadline
            ):
                time.sleep(0.02)
        value = int(download_output.read_text())
        (self.processed_dir / f"{asset_id}.txt").write_text(str(value * 10))
        worker = {
            "pid": os.getpid(),
            "thread": threading.get_ident(),
            "instance": id(self),
            "frozen_objects": gc.get_freeze_count(),
            "final_collection_skipped": bool(
                exit_without_final_collection.cache_info().currsize
            ),
            "start": started,
            "process_started": process_started_at(),
        }
        (self.processed_dir / f"{asset_id}.json").write_text(json.dumps(worker))

    def _misbehave(self, asset_id):
        """What --deadlock, --stop, --block-alarm, --hang, --die, --exit, --sys-exit
        and --interrupt ask of this asset's process."""
        if asset_id in self.args.deadlock.split("|"):
            mutex = ctypes.create_string_buffer(64)  # a default pthread mutex
            libc = ctypes.CDLL(None)
            libc.pthread_mutex_lock(mutex)
            libc.pthread_mutex_lock(mutex)  # never returns: no signal stops it
        if asset_id in self.args.stop.split("|"):
            os.kill(os.getpid(), signal.SIGSTOP)
        if asset_id in self.args.block_alarm.split("|"):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            time.sleep(600)
        if asset_id in self.args.hang.split("|"):
            for _ in range(6000):  # ten minutes of Python-level work, sleeping
                time.sleep(0.1)
        if asset_id in self.args.die.split("|"):
            os.kill(os.getpid(), signal.SIGKILL)
        if asset_id in self.args.exit.split("|"):
            os._exit(3)
        if asset_id in self.args.sys_exit.split("|"):
            sys.exit(3)
        if asset_id in self.args.interrupt.split("|"):
            raise KeyboardInterrupt

    def _maybe_fail(self, asset_id, stage):
        if asset_id in self.args.fail.split("|") and self.args.fail_stage == stage:
            raise RuntimeError(f"{asset_id} fails on purpose in {stage}")
