"""An asset's download retries (``brainsets.retries``) around ``download()``'s own:
the two do not multiply."""

import socket

import pandas as pd

from brainsets_kedro import BrainsetPipeline, download
from brainsets_kedro.worker.job import BrainsetJob
from brainsets_kedro.worker.status import DONE, FAILED

CALLS: list[str] = []


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nobody listens once it is closed


class Fetcher(BrainsetPipeline):
    """Its download fetches a URL nobody answers, or fails on its own."""

    brainset_id = "fetcher"

    @classmethod
    def get_manifest(cls, raw_dir, args):
        return pd.DataFrame()

    def download(self, manifest_item):
        CALLS.append(manifest_item.Index)
        if manifest_item.url == "flaky" and len(CALLS) < 3:
            raise ValueError("flaky")
        if manifest_item.url == "flaky":
            return None
        return download(
            manifest_item.url, self.raw_dir / "x.bin", retries=2, backoff=0.01
        )

    def process(self, download_output):
        pass


def _job(tmp_path, retries):
    return BrainsetJob(
        Fetcher,
        tmp_path / "raw",
        tmp_path / "out",
        None,
        columns=("url",),
        retries=retries,
        retry_backoff=0.01,
    )


def test_a_download_that_gave_up_is_not_tried_again(tmp_path):
    CALLS.clear()
    url = f"http://127.0.0.1:{_closed_port()}/x.bin"
    result = _job(tmp_path, retries=3).run(("a_00", url))
    assert result.status == FAILED
    assert "DownloadError" in result.error
    assert CALLS == ["a_00"]  # once: download() retried twice itself
    err = (tmp_path / "out" / "pipeline_logs" / "a_00.err").read_text()
    assert err.count("retrying in") == 2
    assert "download attempt" not in err


def test_other_errors_of_a_download_are_tried_again(tmp_path):
    CALLS.clear()
    result = _job(tmp_path, retries=3).run(("a_00", "flaky"))
    assert result.status == DONE
    assert CALLS == ["a_00"] * 3
    err = (tmp_path / "out" / "pipeline_logs" / "a_00.err").read_text()
    assert "download attempt 2 of 4 failed; trying again in 0.02 s" in err
