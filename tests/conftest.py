"""Shared fixtures: a temporary copy of the project (:func:`project_with`) and
`kedro` run in it, in a process of its own (:func:`kedro`, :func:`start_kedro`) or
in this one (:func:`kedro_in_process`); a brainset's catalog for a runner
(:func:`brainset_catalog`); and :func:`poll_for`, how every test waits for an event
(a file, a log line, a ledger record, a process's end) instead of sleeping."""

from __future__ import annotations

import atexit
import contextlib
import importlib
import importlib.util
import io
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import Popen
from typing import IO, Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TEST_BRAINSETS = Path(__file__).resolve().parent / "brainsets"

os.environ["KEDRO_DISABLE_TELEMETRY"] = "1"
# Tests never reach a package index: the check of printed pip commands
# (brainsets_kedro.upstream.installcheck) resolves against local wheels, or reports "not checked".
os.environ.setdefault("PIP_NO_INDEX", "1")


def _own_temporary_folder() -> None:
    """Send what the suite's processes write to the system temp folder (Ray
    sessions, dask-scratch-space, Chromium profiles, Kedro's processes' temporary
    files) to one folder of the test session, removed when it ends. The first
    process of the session (pytest, or xdist's controller) makes it; the processes
    it starts (xdist workers, kedro, dask, ray) inherit it. pytest's own base
    temporary folder stays where pytest puts it: tmp_path_retention_policy in
    pyproject.toml removes it after a run that passed.

    And the test processes themselves log as the project does, but to no file: Kedro
    reads conf/logging.yml from the working directory (the project's) when imported,
    whose file handler appended every test's records to the project's info.log."""
    if "BRAINSETS_KEDRO_TEST_TMP" in os.environ:
        return
    folder = tempfile.mkdtemp(prefix="bk-tests-")  # short: Ray's socket paths
    creator = os.getpid()
    config = yaml.safe_load((REPO / "conf" / "logging.yml").read_text())
    config["handlers"].pop("info_file_handler", None)
    for logger in [*config.get("loggers", {}).values(), config.get("root", {})]:
        if "handlers" in logger:
            logger["handlers"] = [
                h for h in logger["handlers"] if h in config["handlers"]
            ]
    logging_yml = os.path.join(folder, "logging.yml")
    with open(logging_yml, "w") as file:
        yaml.safe_dump(config, file)
    os.environ.update(
        BRAINSETS_KEDRO_TEST_TMP=folder,
        TMPDIR=folder,
        RAY_TMPDIR=folder,
        DASK_TEMPORARY_DIRECTORY=folder,
        KEDRO_LOGGING_CONFIG=logging_yml,
    )

    @atexit.register
    def remove() -> None:
        if os.getpid() == creator:  # not in a forked child
            shutil.rmtree(folder, ignore_errors=True)


_own_temporary_folder()


def copy_project(root: Path) -> Path:
    """A copy of the project (code and configuration, no data) at ``root``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("conf", "src"):
        shutil.copytree(REPO / name, root / name, ignore=ignore)
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(REPO / name, root / name)
    (root / "conf" / "local").mkdir(exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    return root


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The project's cache folder (install advice) under the test's own folder."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("BRAINSETS_KEDRO_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def _session_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def shared_cache_dir(
    _cache_dir: Path, _session_cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """For a test that is not about the cache: the cache folder that the tests of
    this process share, as a user's is kept from one command to the next (pip's
    resolver, asked once per brainset's requirements, costs half a second of CPU
    each time)."""
    monkeypatch.setenv("BRAINSETS_KEDRO_CACHE_DIR", str(_session_cache_dir))
    return _session_cache_dir


def poll_for(
    condition: Callable[[], Any],
    timeout: float = 60.0,
    interval: float = 0.05,
    what: str | Callable[[], Any] = "timed out waiting",
) -> Any:
    """Wait until ``condition()`` is true, polling every ``interval`` seconds; fail
    the test after ``timeout`` seconds (a bound against a hang, not a measure).

    Args:
        condition: Checked at once, then after each interval; it may assert (say,
            that the process it waits on is still alive) to fail the test sooner.
        timeout: Seconds after which the test fails.
        interval: Seconds between two checks.
        what: The failure's message, or a function that gives it (called then).

    Returns:
        The condition's first true value.
    """
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, what() if callable(what) else what
        time.sleep(interval)
    return value


def text_of(path: Path) -> str:
    """The text of the file at ``path``; empty while it does not exist (for
    :func:`poll_for`: wait until a log holds a line)."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def brainset_catalog(
    folder: Path,
    brainset: str = "toy",
    parameters: dict[str, Any] | None = None,
    *,
    kind: Callable[[dict[str, Any]], Any] | None = None,
    raw: Path | None = None,
    processed: Path | None = None,
    more: dict[str, Any] | None = None,
) -> Any:
    """A catalog for ``brainset`` under ``folder``, as the project's catalog.yml
    declares its datasets: ``<brainset>.raw_dir`` in ``folder/raw/<brainset>``,
    ``.processed_dir`` in ``folder/proc/<brainset>``, ``.run_report`` at
    ``folder/report.pq`` (on disk, as in the project); the folders as given.

    Args:
        folder: The test's own folder.
        brainset: The brainset's id.
        parameters: The run's parameters (``{brainset: {...}, "brainsets": {...}}``),
            as Kedro's context gives them (:func:`set_parameters`); none if None.
        kind: The catalog class (``DataCatalog``, or Kedro's shared memory catalog).
        raw: The raw folder, if not the usual one.
        processed: The processed folder, if not the usual one.
        more: Other datasets, by name.

    Returns:
        The catalog.
    """
    # Imported once _own_temporary_folder has set the environment Kedro reads.
    from kedro.io import DataCatalog  # noqa: PLC0415
    from kedro_datasets.pandas import ParquetDataset  # noqa: PLC0415

    from brainsets_kedro.datasets import BrainsetDirectory  # noqa: PLC0415

    raw = raw or folder / "raw" / brainset
    processed = processed or folder / "proc" / brainset
    catalog = (kind or DataCatalog)(
        {
            f"{brainset}.raw_dir": BrainsetDirectory(str(raw)),
            f"{brainset}.processed_dir": BrainsetDirectory(str(processed)),
            f"{brainset}.run_report": ParquetDataset(
                filepath=str(folder / "report.pq")
            ),
            **(more or {}),
        }
    )
    if parameters is not None:
        set_parameters(catalog, parameters)
    return catalog


def project_with(
    root: Path,
    brainsets: dict[str, str] | None = None,
    parameters: str | None = None,
) -> Path:
    """A copy of the project at ``root`` (:func:`copy_project`) with these
    brainsets (name: source, as :func:`add_brainset` takes it) and, if given, this
    ``conf/local/parameters.yml``."""
    copy_project(root)
    for name, source in (brainsets or {}).items():
        add_brainset(root, source, name)
    if parameters is not None:
        (root / "conf" / "local" / "parameters.yml").write_text(parameters)
    return root


@pytest.fixture
def two(project: Path) -> Path:
    """A project with two brainsets, ``toy`` and ``toy2`` (the same code)."""
    add_brainset(project, "toy", "toy")
    toy2 = (TEST_BRAINSETS / "toy.py").read_text()
    add_brainset(project, toy2.replace('"toy"', '"toy2"'), "toy2")
    return project


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project to run kedro in."""
    return copy_project(tmp_path / "project")


def set_parameters(catalog: Any, parameters: dict[str, Any]) -> None:
    """Give ``catalog`` these parameters as Kedro's context does: ``parameters``, and
    ``params:<key>`` for each top-level key (what brainset nodes take)."""
    catalog["parameters"] = parameters
    for key, value in parameters.items():
        catalog[f"params:{key}"] = value


def add_brainset(project: Path, source: str | Path, name: str) -> Path:
    """Drop a brainset file into the project as pipelines/<name>/pipeline.py."""
    folder = project / "src" / "brainsets_kedro" / "pipelines" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "__init__.py").touch()
    text = (
        (TEST_BRAINSETS / f"{source}.py").read_text()
        if isinstance(source, str) and "\n" not in source
        else str(source)
    )
    (folder / "pipeline.py").write_text(text)
    return folder


def _kedro_env(project: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop(
        "KEDRO_LOGGING_CONFIG", None
    )  # the project's conf/logging.yml, as for a user
    return {
        **env,
        "KEDRO_DISABLE_TELEMETRY": "1",
        "PYTHONPATH": str(project / "src"),
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }


def kedro(project: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the kedro CLI in ``project`` as a user would; returns the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "kedro", *args],
        check=False,
        cwd=project,
        env=_kedro_env(project),
        capture_output=True,
        text=True,
        timeout=300,
    )


def start_kedro(project: Path, *args: str, output: Any = subprocess.PIPE) -> Popen:
    """Start the kedro CLI in ``project`` in its own process group, as a terminal
    starts it (signals can go to the whole group); stdout and stderr go to ``output``."""
    return subprocess.Popen(
        [sys.executable, "-m", "kedro", *args],
        cwd=project,
        env=_kedro_env(project),
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@contextlib.contextmanager
def no_run_left(run: Popen) -> Iterator[None]:
    """Kill the process group of ``run`` at the end of the block if it is still
    running: a test that fails midway leaves no run (nor its workers or cluster)
    behind to load the next tests."""
    try:
        yield
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()


def kedro_in_process(project: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the kedro CLI in ``project`` as :func:`kedro` does, in this process:
    Kedro's own entry point (the project's ``kedro run`` builds a ``KedroSession``
    and runs it), with the project's logging configuration, working directory and
    modules, and its output captured. No new Python to start: about a second less
    per command. For what only a process of its own shows (signals, process death,
    the exit of the process itself), use :func:`kedro` or :func:`start_kedro`.

    Args:
        project: A copy of the project (see :func:`copy_project`).
        *args: The command and its options, as for ``kedro``.

    Returns:
        The command's exit code and what it printed (log lines included).
    """
    from kedro.framework.cli.cli import KedroCLI  # noqa: PLC0415

    out, err = io.StringIO(), io.StringIO()
    code: Any = 0
    with tempfile.TemporaryFile() as below:
        with (
            _fd_output(below),
            _in_project(project),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            _project_logging(project),
        ):
            try:
                KedroCLI(project_path=project).main(args=list(args), prog_name="kedro")
            except SystemExit as exit_:
                code = exit_.code
            except Exception:  # as Python shows an uncaught error, and exits with 1
                traceback.print_exc()
                code = 1
        below.seek(0)
        # What was written below sys.stdout and sys.stderr (the workers' own output
        # included), as the kedro process's output would hold it.
        err.write(below.read().decode(errors="replace"))
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message")
        err.write(f"{code}\n")
        code = 1
    return subprocess.CompletedProcess(
        ["kedro", *args], code, out.getvalue(), err.getvalue()
    )


@contextlib.contextmanager
def _fd_output(file: IO[bytes]) -> Iterator[None]:
    """File descriptors 1 and 2 (inherited by the processes started meanwhile)
    write to ``file``; then as they were."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    os.dup2(file.fileno(), 1)
    os.dup2(file.fileno(), 2)
    try:
        yield
    finally:
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)


PIPELINES = "brainsets_kedro.pipelines"


@contextlib.contextmanager
def _in_project(project: Path) -> Iterator[None]:
    """This process as the ``kedro`` process in ``project`` would be: its working
    directory, environment, and the brainsets of *its* ``pipelines/`` folder, with
    no worker left from another project. Everything is restored afterwards."""
    import brainsets_kedro  # noqa: PLC0415

    saved_package = importlib.import_module(PIPELINES)
    saved_sys_path, saved_cwd = sys.path[:], os.getcwd()
    saved_env = {name: os.environ.get(name) for name in _env_changes(project)}
    _stop_loky_workers()
    _forget_project_modules(project)
    # The package's other modules are the project's already (copy_project copied
    # them); its pipelines are the copy's. Workers (started with this sys.path)
    # import all of it from the copy, as those of the kedro process do.
    folder = project / "src" / "brainsets_kedro" / "pipelines"
    spec = importlib.util.spec_from_file_location(
        PIPELINES, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    package = importlib.util.module_from_spec(spec)
    sys.modules[PIPELINES] = brainsets_kedro.pipelines = package
    spec.loader.exec_module(package)
    sys.path.insert(0, str(project / "src"))
    os.environ.update(_env_changes(project))
    os.chdir(project)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        sys.path[:] = saved_sys_path
        _stop_loky_workers()
        _forget_project_modules(project)
        sys.modules[PIPELINES] = brainsets_kedro.pipelines = saved_package


def _env_changes(project: Path) -> dict[str, str]:
    env = _kedro_env(project)
    return {name: env[name] for name in ("PYTHONPATH", "COLUMNS", "NO_COLOR")}


def _forget_project_modules(project: Path) -> None:
    """Drop the modules of a project's brainsets (and anything imported from its
    folder) so that the next import finds those of the next project."""
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None) or ""
        if name.startswith(PIPELINES + ".") or origin.startswith(f"{project}{os.sep}"):
            del sys.modules[name]


def _stop_loky_workers() -> None:
    """Stop joblib's reusable loky workers: they hold the modules of the project
    they were started for."""
    from joblib.externals.loky import reusable_executor  # noqa: PLC0415

    executor = reusable_executor._executor
    if executor is not None:
        executor.shutdown(wait=True, kill_workers=True)


@contextlib.contextmanager
def _project_logging(project: Path) -> Iterator[None]:
    """Logging as ``kedro`` sets it up in ``project`` (``conf/logging.yml``, console
    handlers fitted by settings.py) on the current stdout; then as it was."""
    from kedro.framework.project import LOGGING  # noqa: PLC0415

    from brainsets_kedro.framework.logs import setup_console  # noqa: PLC0415

    manager = logging.Logger.manager
    loggers = [logging.getLogger()] + [
        logger
        for logger in manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    saved = [
        (lg, lg.handlers[:], lg.level, lg.propagate, lg.disabled) for lg in loggers
    ]
    saved_data, showwarning = dict(LOGGING.data), warnings.showwarning
    LOGGING.configure(yaml.safe_load((project / "conf" / "logging.yml").read_text()))
    setup_console(terminal=False)
    try:
        yield
    finally:
        for handler in logging.getLogger().handlers:
            handler.flush()
        kept = {id(handler) for _, handlers, *_ in saved for handler in handlers}
        for logger in list(manager.loggerDict.values()) + [logging.getLogger()]:
            if isinstance(logger, logging.Logger):
                for handler in logger.handlers:
                    if id(handler) not in kept:
                        handler.close()
                # A logger made during the run: as logging.getLogger() makes it.
                logger.handlers, logger.level = [], logging.NOTSET
                logger.propagate, logger.disabled = True, False
        for logger, handlers, level, propagate, disabled in saved:
            logger.handlers, logger.level = handlers, level
            logger.propagate, logger.disabled = propagate, disabled
        LOGGING.data = saved_data
        logging.captureWarnings(False)
        warnings.showwarning = showwarning


THREADS = "--runner-params=backend=threading"
"""A run's option for tests whose result does not depend on worker processes
(messages, files, parameters, the run after another): the assets run in threads of
the driver, no loky worker to start (about a second of CPU per run). Keep loky
where worker processes are the point: signals, deaths, fds, imports in workers."""
