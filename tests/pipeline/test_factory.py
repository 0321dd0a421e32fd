"""The factory: a BrainsetPipeline class becomes four static Kedro nodes."""

import pandas as pd

from brainsets_kedro import BrainsetPipeline
from brainsets_kedro.pipeline.card import DescribeNode
from brainsets_kedro.pipeline.factory import create_brainset_pipeline
from brainsets_kedro.pipeline.nodes import DownloadNode, ManifestNode, ProcessNode
from tests.brainsets.toy import Pipeline as Toy


def test_shape_names_inputs_outputs():
    pipeline = create_brainset_pipeline(Toy)
    nodes = {n.name: n for n in pipeline.nodes}
    assert set(nodes) == {
        "toy.manifest",
        "toy.download",
        "toy.process",
        "toy.describe",
    }
    assert all(n.namespace == "toy" for n in nodes.values())
    # The runner's contract: the brainset's nodes carry the "brainset" tag.
    assert all(n.tags == {"brainset"} for n in nodes.values())

    manifest, download, process = (
        nodes["toy.manifest"],
        nodes["toy.download"],
        nodes["toy.process"],
    )
    assert isinstance(manifest.func, ManifestNode)
    assert isinstance(download.func, DownloadNode)
    assert isinstance(process.func, ProcessNode)
    # Kedro's log lines name each node's function as before.
    assert str(download).startswith("download: download([toy.manifest;")
    # Each node takes its brainset's own parameters and the run-level ones only.
    assert manifest.inputs == ["toy.raw_dir", "params:toy", "params:brainsets"]
    assert manifest.outputs == ["toy.manifest"]
    assert download.inputs == [
        "toy.manifest",
        "toy.raw_dir",
        "toy.processed_dir",
        "params:toy",
        "params:brainsets",
    ]
    assert download.outputs == ["toy.downloads"]
    assert process.inputs == [
        "toy.downloads",
        "toy.raw_dir",
        "toy.processed_dir",
        "params:toy",
        "params:brainsets",
    ]
    assert process.outputs == ["toy.run_report"]
    describe = nodes["toy.describe"]
    assert isinstance(describe.func.__self__, DescribeNode)
    assert describe.inputs == ["toy.run_report", "toy.processed_dir"]
    assert describe.outputs == ["toy.card"]
    # Topological order: manifest, then download, then process, then describe.
    assert [n.name for n in pipeline.nodes] == [
        "toy.manifest",
        "toy.download",
        "toy.process",
        "toy.describe",
    ]
    assert pipeline.inputs() == {
        "toy.raw_dir",
        "toy.processed_dir",
        "params:toy",
        "params:brainsets",
    }


class Unreachable(BrainsetPipeline):
    brainset_id = "unreachable"
    calls = 0

    @classmethod
    def get_manifest(cls, raw_dir, processed_dir, args):
        cls.calls += 1
        raise ConnectionError("the archive is offline")

    def download(self, manifest_item):
        return None

    def process(self, download_output):
        return None


def test_building_never_calls_get_manifest():
    pipeline = create_brainset_pipeline(Unreachable)
    assert len(pipeline.nodes) == 4
    assert Unreachable.calls == 0


def test_processed_dir_variant_of_get_manifest(tmp_path):
    class WithProcessedDir(Unreachable):
        brainset_id = "with_processed"

        @classmethod
        def get_manifest(cls, raw_dir, processed_dir, args):
            return pd.DataFrame({"where": [str(processed_dir)]}, index=["a"])

    pipeline = create_brainset_pipeline(WithProcessedDir)
    manifest_node = next(n for n in pipeline.nodes if n.name.endswith(".manifest"))
    assert "with_processed.processed_dir" in manifest_node.inputs
    manifest = manifest_node.run(
        {
            "with_processed.raw_dir": tmp_path / "raw",
            "with_processed.processed_dir": tmp_path / "proc",
            "params:with_processed": None,
            "params:brainsets": None,
        }
    )["with_processed.manifest"]
    assert manifest.loc["a", "where"] == str(tmp_path / "proc")
