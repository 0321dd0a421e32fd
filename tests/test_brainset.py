"""The BrainsetPipeline API, as the brainsets package defines it."""

import ast
import inspect
from argparse import Namespace
from pathlib import Path

import pandas as pd
import pytest

import brainsets_kedro
import brainsets_kedro.brainset as brainset_module
from brainsets_kedro import BrainsetPipeline
from brainsets_kedro.brainset import status_style
from brainsets_kedro.io.atomic import atomic_write


class Minimal(BrainsetPipeline):
    brainset_id = "minimal"

    @classmethod
    def get_manifest(cls, raw_dir, args):
        return pd.DataFrame({"x": [1]}, index=["a"])

    def download(self, manifest_item):
        return manifest_item.x

    def process(self, download_output):
        return None


def test_abstract_methods_must_be_implemented():
    with pytest.raises(TypeError, match="abstract"):
        BrainsetPipeline(Path("r"), Path("p"), None)  # type: ignore[abstract]

    class NoProcess(BrainsetPipeline):
        brainset_id = "x"

        @classmethod
        def get_manifest(cls, raw_dir, args):
            return pd.DataFrame()

        def download(self, manifest_item):
            return None

    with pytest.raises(TypeError, match="process"):
        NoProcess(Path("r"), Path("p"), None)  # type: ignore[abstract]


def test_constructor_and_attributes(tmp_path):
    args = Namespace(flag=True)
    pipeline = Minimal(tmp_path / "raw", str(tmp_path / "proc"), args)
    assert pipeline.raw_dir == tmp_path / "raw"
    assert pipeline.processed_dir == tmp_path / "proc"
    assert isinstance(pipeline.processed_dir, Path)
    assert pipeline.args is args
    assert Minimal.parser is None
    signature = inspect.signature(BrainsetPipeline.__init__)
    assert list(signature.parameters) == [
        "self",
        "raw_dir",
        "processed_dir",
        "args",
        "tracker_handle",
        "download_only",
    ]
    assert signature.parameters["download_only"].default is False


def test_update_status_prints_when_used_directly(tmp_path, capsys):
    pipeline = Minimal(tmp_path, tmp_path, None)
    pipeline.update_status("DOWNLOADING [part 1]")
    out = capsys.readouterr().out
    assert "[Status]" in out
    assert "DOWNLOADING [part 1]" in out


def test_update_status_goes_to_the_tracker(tmp_path, capsys):
    seen = []
    pipeline = Minimal(
        tmp_path, tmp_path, None, tracker_handle=lambda *a: seen.append(a)
    )
    pipeline._asset_id = "a"
    pipeline.update_status("DONE")
    assert seen == [("a", "DONE")]
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("status", "style"),
    [
        ("DONE", "green"),
        ("UP TO DATE", "green"),
        ("FAILED", "red"),
        ("DOWNLOADING", "blue"),
        ("Extracting spikes", "yellow"),
    ],
)
def test_status_colours_as_upstream(status, style):
    assert status_style(status) == style


def test_module_imports_nothing_from_kedro_or_joblib():
    tree = ast.parse(Path(brainset_module.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not imported & {"kedro", "joblib"}


def test_atomic_write_is_public_and_the_one_the_class_offers():
    assert brainsets_kedro.atomic_write is atomic_write
    assert BrainsetPipeline.atomic_write is atomic_write
    assert "atomic_write" in brainsets_kedro.__all__


def test_atomic_write_renames_when_complete(tmp_path):
    target = tmp_path / "out" / "sess_01.h5"
    with BrainsetPipeline.atomic_write(target) as tmp:
        assert tmp.parent == target.parent
        assert tmp.name.startswith(".~bk.") and "sess_01.h5" in tmp.name
        assert not tmp.name.endswith(".h5")  # a *.h5 glob never lists it
        assert not list(target.parent.glob("*.h5"))
        tmp.write_text("complete")
        assert not target.exists()
    assert target.read_text() == "complete"
    assert list(target.parent.iterdir()) == [target]


def test_atomic_write_leaves_nothing_half_written(tmp_path):
    target = tmp_path / "sess_01.h5"
    target.write_text("previous")
    with pytest.raises(RuntimeError), BrainsetPipeline.atomic_write(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "previous"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_write_needs_a_file(tmp_path):
    with (
        pytest.raises(FileNotFoundError, match="nothing was written"),
        BrainsetPipeline.atomic_write(tmp_path / "x.txt"),
    ):
        pass


def test_atomic_write_names_a_suffix_the_writer_added(tmp_path):
    with (
        pytest.raises(
            FileNotFoundError,
            match=r"added a suffix and wrote \.~bk\.[0-9a-f]{8}\.x\.npy\.tmp\.npy",
        ),
        BrainsetPipeline.atomic_write(tmp_path / "x.npy") as tmp,
    ):
        Path(f"{tmp}.npy").write_text("np.save adds .npy to a name without it")
    assert not list(tmp_path.iterdir())
