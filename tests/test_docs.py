"""The documentation is tested: the site builds with ``mkdocs build --strict``, and
the code blocks of the README and of every page under docs/ run, page by page, in a
copy of the project, so a documented command that fails, or an output a page shows
that is no longer printed, fails the tests.

How each block runs (docs/contributing.md says the same to writers):

- ``bash``/``sh``: each line is a command (``&&`` chains, ``\\`` continues, ``#``
  comments). ``kedro ...`` runs in this process (:func:`kedro_in_process`) and must
  exit 0 without printing a warning; ``ruff ...`` runs in the copy; ``pip install -e ".[x]"`` checks that the
  extra ``x`` exists (this environment has the project installed); ``pytest [paths]``
  checks that the paths exist (this is the suite it would run).
- ``console``: ``$ command`` lines run as above; every other line (but ``...``) must
  be in what the command before it printed.
- ``python``: runs in a namespace of its page, in the project's folder, with the
  ``catalog`` of ``kedro ipython``. A first line ``# <path>`` makes the block a file,
  written there (a YAML file is appended to) for the blocks after it.
- ``yaml``: parsed; a file (as for ``python``) when it starts with ``# <path>``.

A comment just above a block tells what it needs:
``<!-- docs-test: skip: <why it cannot run offline> -->``,
``<!-- docs-test: needs <module> -->`` (skipped where the module is missing),
``<!-- docs-test: before: <command> -->`` (run first, not shown),
``<!-- docs-test: files -->`` (a listing of files that the blocks before made).
A command this module does not know fails, asking for one of these.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib.metadata import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from kedro.pipeline.node import _DOTTED_DATASET_NAME_WARNED, Node

from brainsets_kedro.framework.cli import brainset
from brainsets_kedro.pipeline.card import CARD_COLUMNS
from brainsets_kedro.pipeline.report import REPORT_COLUMNS
from brainsets_kedro.pipeline.run_settings import RunSettings
from tests.conftest import REPO, _in_project, kedro_in_process, project_with

PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
RUFF = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
_FENCE = re.compile(r"^(\s*)```\s*([\w-]*)")  # the language: its first word
_MARK = re.compile(r"^\s*<!-- docs-test: (.+?) -->\s*$")
_FILE = re.compile(r"^# ([\w./-]+/[\w.-]+\.(?:py|yml|yaml))\s*$")


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, from 1
    lang: str
    code: str
    marks: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line} ({self.lang or 'text'})"


def read_blocks(page: Path) -> list[Block]:
    """The fenced code blocks of ``page``, each with the docs-test comments just
    above it."""
    blocks, lines = [], page.read_text().splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, lang = opening.groups()
        marks, above = [], i - 1
        while above >= 0 and (mark := _MARK.match(lines[above])):
            marks.insert(0, mark.group(1))
            above -= 1
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        code = "\n".join(line[len(indent) :] for line in lines[i + 1 : end]) + "\n"
        blocks.append(Block(page, i + 1, lang, code, marks))
        i = end + 1
    return blocks


def commands(code: str) -> list[list[str]]:
    """A shell block's commands, as argument lists."""
    found = []
    for line in code.replace("\\\n", " ").splitlines():
        command: list[str] = []
        for word in shlex.split(line, comments=True):
            if word == "&&":
                found.append(command)
                command = []
            else:
                command.append(word)
        if command:
            found.append(command)
    return found


class Page:
    """Runs one page's blocks in order, in one copy of the project."""

    def __init__(self, project: Path) -> None:
        self.project = project
        self.namespace: dict[str, Any] = {"__name__": "__docs__"}
        # The extras of the installed project (pip install -e . reads pyproject.toml).
        self.extras = set(metadata("brainsets_kedro").get_all("Provides-Extra"))

    def run(self, block: Block) -> None:
        if not self.ready(block):
            return
        if block.lang in ("bash", "sh"):
            for command in commands(block.code):
                self.command(command, block)
        elif block.lang == "console":
            self.console(block)
        elif block.lang == "python":
            self.python(block)
        elif block.lang in ("yaml", "yml") and not self.file(block):
            yaml.safe_load(block.code)
        elif "files" in block.marks:
            self.files(block)

    def ready(self, block: Block) -> bool:
        """Whether ``block`` runs here (its docs-test comments), once what it
        needs first has run."""
        for mark in block.marks:
            if mark.startswith("skip:"):
                return False
            if mark.startswith("needs "):
                if importlib.util.find_spec(mark.removeprefix("needs ")) is None:
                    return False
            elif mark.startswith("before:"):
                for command in commands(mark.removeprefix("before:")):
                    self.command(command, block)
            elif mark != "files":
                pytest.fail(f"{block}: unknown docs-test comment {mark!r}")
        return True

    def command(self, command: list[str], block: Block) -> str:
        """Run one documented command; returns what it printed."""
        name, *args = command
        if name == "kedro":
            # Kedro warns of dotted dataset names once per process: here, once per
            # command, as in a shell.
            setattr(Node, _DOTTED_DATASET_NAME_WARNED, False)
            result = kedro_in_process(self.project, *args)
            output = result.stdout + result.stderr
            assert result.returncode == 0, f"{block}: {shlex.join(command)}\n{output}"
            assert "Warning: " not in output, (
                f"{block}: {shlex.join(command)}\n{output}"
            )
            return output
        if name == "ruff":
            result = subprocess.run(
                [RUFF, *args],
                check=False,
                cwd=self.project,
                capture_output=True,
                text=True,
            )
            output = result.stdout + result.stderr
            assert result.returncode == 0, f"{block}: {shlex.join(command)}\n{output}"
            return output
        if command[:3] == ["pip", "install", "-e"] and len(command) == 4:
            extras = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", command[3])
            assert extras, f"{block}: cannot check {shlex.join(command)}"
            for extra in filter(None, (extras.group(1) or "").split(",")):
                assert extra in self.extras, f"{block}: no extra {extra!r}"
            return ""
        if name == "pytest":
            for arg in args:
                if arg.startswith("tests/"):
                    assert (REPO / arg.split("::")[0]).exists(), f"{block}: {arg}"
            return ""
        pytest.fail(
            f"{block}: the tests do not know how to run {shlex.join(command)!r}: "
            "mark the block <!-- docs-test: skip: <why> --> if it cannot run offline"
        )

    def console(self, block: Block) -> None:
        output, shown = None, []

        def check() -> None:
            printed = " ".join(output.split()) if output is not None else ""
            for line in shown:
                assert " ".join(line.split()) in printed, (
                    f"{block}: {line!r} is not printed any more:\n{output}"
                )

        for line in block.code.splitlines():
            if line.startswith("$ "):
                check()
                output, shown = "", []
                for command in commands(line[2:]):
                    output += self.command(command, block)
            elif line.strip() and line.strip() != "...":
                shown.append(line)
        check()

    def files(self, block: Block) -> None:
        """A listing of files: each line's first word is a path that exists (for
        ``dir/name.out|.err``, output files made only when written, its folder);
        after a folder, a file named in the second word exists in it."""
        for line in block.code.splitlines():
            path, *rest = line.split() or [""]
            if not path:
                continue
            if "|" in path:
                path = path.rsplit("/", 1)[0]
            assert (self.project / path).exists(), f"{block}: no {path}"
            if path.endswith("/") and rest and "." in rest[0]:
                assert (self.project / path / rest[0]).exists(), f"{block}: {line}"

    def file(self, block: Block) -> bool:
        """Write a block that starts with ``# <path>`` to that path; whether it did."""
        first = block.code.splitlines()[0] if block.code.strip() else ""
        path = _FILE.match(first)
        if not path:
            return False
        target = self.project / path.group(1)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.suffix == ".py":
            package = target.parent
            while (
                package != self.project / "src"
                and not (package / "__init__.py").exists()
            ):
                (package / "__init__.py").touch()
                package = package.parent
            target.write_text(block.code)
        else:
            with target.open("a") as file:
                file.write("\n" + block.code)
        return True

    def python(self, block: Block) -> None:
        if self.file(block):
            return
        with _in_project(self.project):
            if "catalog" in block.code and "catalog" not in self.namespace:
                self.namespace["catalog"] = _catalog(self.project)
            try:
                exec(compile(block.code, str(block), "exec"), self.namespace)
            except Exception as error:
                pytest.fail(f"{block}: {type(error).__name__}: {error}")


def _catalog(project: Path) -> Any:
    """The ``catalog`` that ``kedro ipython`` defines in ``project``."""
    from kedro.framework.session import KedroSession  # noqa: PLC0415
    from kedro.framework.startup import bootstrap_project  # noqa: PLC0415

    bootstrap_project(project)
    session = KedroSession.create(project_path=project)
    return session.load_context().catalog


@pytest.mark.parametrize(
    "page", PAGES, ids=[str(page.relative_to(REPO)) for page in PAGES]
)
@pytest.mark.usefixtures("shared_cache_dir")
def test_page_blocks_run(page, tmp_path):
    # What the commands do and print, not where assets run (the runner's tests see
    # to the worker processes): assets in threads, no worker process to start.
    project = project_with(
        tmp_path / "project", parameters="brainsets:\n  backend: threading\n"
    )
    runner = Page(project)
    for block in read_blocks(page):
        runner.run(block)


def test_site_builds_strict(tmp_path):
    mkdocs = shutil.which("mkdocs") or str(Path(sys.executable).with_name("mkdocs"))
    built = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert built.returncode == 0, built.stdout + built.stderr
    # The reference pages are made from the code: every run setting, column and
    # command is there, a new one included.
    site = tmp_path / "site" / "reference"
    settings = (site / "run-settings" / "index.html").read_text()
    for setting in dataclasses.fields(RunSettings):
        assert f"brainsets.{setting.name}</code>" in settings
    outputs = (site / "outputs" / "index.html").read_text()
    for column in [*REPORT_COLUMNS, *CARD_COLUMNS]:
        assert f"<code>{column}</code>" in outputs
    commands = (site / "cli" / "index.html").read_text()
    for name in brainset.commands:
        assert f"kedro brainset {name}" in commands


def test_run_settings_table_shows_each_default_as_yaml():
    spec = importlib.util.spec_from_file_location(
        "reference_hook", REPO / "docs" / "hooks" / "reference.py"
    )
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    rows = hook.run_settings().splitlines()[2:]
    defaults = {
        row.split(" | ")[0].strip("| `"): row.rsplit(" | ", 2)[1] for row in rows
    }
    assert defaults == {
        f"brainsets.{setting.name}": f"`{hook._yaml(setting.default)}`"
        for setting in dataclasses.fields(RunSettings)
    }
    # YAML's words, and 0 and 1.0 as numbers (not false and true).
    assert defaults["brainsets.n_jobs"] == "`null`"
    assert defaults["brainsets.download_only"] == "`false`"
    assert defaults["brainsets.retries"] == "`0`"
    assert defaults["brainsets.retry_backoff"] == "`1.0`"
    assert "`null`: no limit" in hook.run_settings()
