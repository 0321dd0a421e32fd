"""The pip command printed for missing packages is checked with pip's own resolver
against this environment, offline: small wheels built here stand in for an index."""

import zipfile
from importlib import metadata as importlib_metadata
from pathlib import Path

import pytest

from brainsets_kedro.upstream.installcheck import advise_install
from brainsets_kedro.upstream.metadata import RequirementCheck
from brainsets_kedro.upstream.requirements import install_advice
from tests.conftest import TEST_BRAINSETS, add_brainset, kedro_in_process

KEDRO = f"kedro {importlib_metadata.version('kedro')}"
CLICK = importlib_metadata.version("click")


def _wheel(folder: Path, name: str, version: str, *requires: str) -> None:
    """A minimal wheel of ``name`` that requires ``requires``."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{n},,\n" for n in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(folder / f"{dist}-{version}-py3-none-any.whl", "w") as whl:
        for path, text in files.items():
            whl.writestr(path, text)


@pytest.fixture
def index(tmp_path, monkeypatch):
    """A package index on disk: an old click (Kedro needs click>=8.2), a tool whose
    1.0 needs it and whose 2.0 does not, one that only ever needs it, one that fits."""
    folder = tmp_path / "wheels"
    folder.mkdir()
    _wheel(folder, "click", "8.1.0")
    _wheel(folder, "bk-tool", "1.0", "click<8.2")
    _wheel(folder, "bk-tool", "2.0", "click>=8.0")
    _wheel(folder, "bk-tool", "3.0", "click<8.2")  # newest, but needs the old click
    _wheel(folder, "bk-stuck", "1.0", "click<8.2")
    _wheel(folder, "bk-fine", "1.0", "bk-tool>=2; python_version < '3'")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    return folder


def test_a_command_that_fits_is_given_as_is(index):
    advice = advise_install(("bk-fine==1.0",))
    assert advice.fits is True
    assert str(advice) == "pip install bk-fine==1.0"


def test_when_nothing_fits_the_clash_is_named(index):
    advice = advise_install(("bk-stuck==1.0",))
    assert advice.fits is False
    message = install_advice(RequirementCheck(missing=("bk-stuck==1.0",)))
    assert message.startswith(
        "no command installs them beside this environment: pip install "
        f"bk-stuck==1.0 would install click 8.1.0 (installed: {CLICK}), which "
    )
    assert f" {KEDRO} (click>=8.2)" in message
    assert message.endswith(
        " not allow, and no version of bk-stuck fits beside it (bk-stuck==1.0 as "
        "pinned). Run this brainset in an environment of its own (see "
        "docs/coming-from-brainsets.md)."
    )


def test_an_unreachable_index_gives_the_command_unchecked(monkeypatch):
    monkeypatch.delenv("PIP_NO_INDEX", raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    advice = advise_install(("bk-fine==1.0",))
    assert advice.fits is None
    assert str(advice) == (
        "pip install bk-fine==1.0 (not checked: the package index could not be reached)"
    )


def test_a_run_missing_packages_prints_the_relaxed_command(index, project):
    """A clashing pin is relaxed to the newest version that fits; the run prints
    the command (one resolution, by the run, checked here in detail too)."""
    block = (
        '# /// brainset-pipeline\n# dependencies = ["bk-tool==1.0", "bk-fine"]\n# ///\n'
    )
    toy = (TEST_BRAINSETS / "toy.py").read_text().replace('"toy"', '"needs_tool"')
    add_brainset(project, block + toy, "needs_tool")
    # Threads: the check comes before any asset, no worker process to start for it.
    result = kedro_in_process(
        project, "run", "--pipelines=needs_tool", "--runner-params=backend=threading"
    )
    assert result.returncode == 1
    flat = " ".join((result.stdout + result.stderr).split())
    assert (
        "Brainset 'needs_tool' is missing dependencies: bk-tool, bk-fine; install "
        "with: pip install bk-tool==2.0 bk-fine (bk-tool==1.0 as pinned would "
        "install click 8.1.0"
    ) in flat
    assert "bk-tool==2.0 is the newest version that fits)" in flat

    # The advice the run printed, from the cache: with the index emptied, a second
    # resolution would find nothing.
    for wheel in index.iterdir():
        wheel.unlink()
    advice = advise_install(("bk-tool==1.0", "bk-fine"))
    assert advice.fits is True
    assert advice.requirements == ("bk-tool==2.0", "bk-fine")
    text = str(advice)
    assert text.startswith(
        f"pip install bk-tool==2.0 bk-fine (bk-tool==1.0 as pinned would install "
        f"click 8.1.0 (installed: {CLICK}), which "
    )
    assert f" {KEDRO} (click>=8.2)" in text  # and any other that needs a newer click
    assert text.endswith(" not allow; bk-tool==2.0 is the newest version that fits)")


def _needs_tool(project: Path, *requirements: str) -> None:
    listed = ", ".join(f'"{r}"' for r in requirements)
    block = f"# /// brainset-pipeline\n# dependencies = [{listed}]\n# ///\n"
    toy = (TEST_BRAINSETS / "toy.py").read_text().replace('"toy"', '"needs_tool"')
    add_brainset(project, block + toy, "needs_tool")


def _installed_here(project: Path, name: str, version: str) -> None:
    """``name`` ``version`` installed as far as the project's runs see (a
    distribution's metadata on their ``PYTHONPATH``)."""
    info = project / "src" / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    )


def test_the_resolver_is_asked_once_per_requirements_and_environment(index, _cache_dir):
    first = advise_install(("bk-tool==1.0",))
    assert first.requirements == ("bk-tool==2.0",)
    assert (_cache_dir / "install_advice.json").is_file()
    for wheel in index.iterdir():  # a resolution now would find no bk-tool
        wheel.unlink()
    assert advise_install(("bk-tool==1.0",)) == first
    # Another set of requirements is resolved (and, the index now empty, fails).
    assert advise_install(("bk-tool==1.0", "bk-fine")).fits is None


def test_a_damaged_cache_is_rebuilt(index, _cache_dir):
    _cache_dir.mkdir()
    (_cache_dir / "install_advice.json").write_text('{"advice": [1, 2')
    assert advise_install(("bk-fine==1.0",)).fits is True
    assert "bk-fine==1.0" in (_cache_dir / "install_advice.json").read_text()


def test_a_run_with_everything_installed_never_asks_the_resolver(
    index, project, _cache_dir
):
    _needs_tool(project, "kedro", "pandas>=1")
    result = kedro_in_process(
        project, "run", "--pipelines=needs_tool", "--runner-params=backend=threading"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pip's resolver" not in result.stdout + result.stderr
    assert not (_cache_dir / "install_advice.json").exists()


def test_runs_give_the_same_advice_resolved_once_and_then_accept_the_relaxed_pin(
    index, project
):
    _needs_tool(project, "bk-tool==1.0")
    outputs = []
    for _ in range(2):  # the second run asks no resolver: the index is emptied
        result = kedro_in_process(
            project,
            "run",
            "--pipelines=needs_tool",
            "--runner-params=backend=threading",
        )
        assert result.returncode == 1
        outputs.append(" ".join((result.stdout + result.stderr).split()))
        for wheel in index.iterdir():
            wheel.unlink()
    advice = "install with: pip install bk-tool==2.0 (bk-tool==1.0 as pinned would"
    assert advice in outputs[0]
    assert advice in outputs[1]
    assert "pip's resolver" not in outputs[1]

    _installed_here(project, "bk-tool", "2.0")  # the user followed the advice
    result = kedro_in_process(
        project, "run", "--pipelines=needs_tool", "--runner-params=backend=threading"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "asks for" not in result.stdout + result.stderr


def test_another_installed_version_than_pinned_is_still_named(index, project):
    _needs_tool(project, "bk-tool==1.0")
    _installed_here(project, "bk-tool", "3.0")  # not what any advice said
    result = kedro_in_process(
        project, "run", "--pipelines=needs_tool", "--runner-params=backend=threading"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    flat = " ".join((result.stdout + result.stderr).split())
    assert "asks for bk-tool==1.0 in its inline metadata; 3.0 is installed" in flat
