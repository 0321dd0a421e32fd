"""BrainsetRunner as a Kedro runner: for nodes that are not brainset nodes it behaves
as Kedro's SequentialRunner does; each behaviour is checked side by side with it."""

from __future__ import annotations

import logging
import re

import pandas as pd
import pytest
from kedro.framework.hooks import _create_hook_manager, hook_impl
from kedro.io import DataCatalog, MemoryDataset, SharedMemoryDataCatalog
from kedro.pipeline import Pipeline, node
from kedro.runner import ParallelRunner, SequentialRunner, ThreadRunner
from kedro_datasets.pandas import CSVDataset

from brainsets_kedro.errors import UsageError
from brainsets_kedro.framework.hooks import LockBrainsets
from brainsets_kedro.pipeline.factory import create_brainset_pipeline
from brainsets_kedro.runner.runner import BrainsetRunner
from tests.brainsets.toy import Pipeline as Toy
from tests.conftest import brainset_catalog, set_parameters

RUNNERS = [SequentialRunner, BrainsetRunner]


class Released(MemoryDataset):
    """A MemoryDataset that records, in a shared list, when the runner releases it."""

    def __init__(self, name: str, events: list[str]):
        super().__init__()
        self._name = name
        self._events = events

    def _release(self) -> None:
        self._events.append(self._name)
        super()._release()


def identity(x):
    return x


def fail(x):
    raise ValueError(f"bad input {x!r}")


def _chain(events: list[str]) -> tuple[Pipeline, DataCatalog]:
    """in -> a -> b -> c -> out, plus b -> d (two consumers of b)."""
    names = ["a", "b", "c", "d"]
    catalog = DataCatalog({name: Released(name, events) for name in ["in", *names]})
    catalog["in"] = 1
    pipeline = Pipeline(
        [
            node(identity, "in", "a", name="n1"),
            node(identity, "a", "b", name="n2"),
            node(identity, "b", "c", name="n3"),
            node(identity, "b", "d", name="n4"),
            node(identity, "c", "out", name="n5"),
        ]
    )
    return pipeline, catalog


@pytest.mark.parametrize("runner", RUNNERS)
def test_datasets_are_released_as_soon_as_no_node_needs_them(runner):
    events: list[str] = []
    pipeline, catalog = _chain(events)
    runner().run(pipeline, catalog)
    # Released only once no later node loads them; pipeline inputs ("in") and
    # outputs ("d": no consumer) are kept.
    assert events == ["a", "b", "c"]


def _failing(marker: list[str]) -> Pipeline:
    def side_effect(x):
        marker.append("ran")
        return x

    return Pipeline(
        [
            node(identity, "in", "mid", name="a_first"),
            node(fail, "mid", "broken", name="b_fails"),
            node(fail, "mid", "broken_too", name="c_fails_too"),
            node(side_effect, "mid", "after", name="d_side_effect"),
        ]
    )


@pytest.mark.parametrize("runner", RUNNERS)
def test_first_failure_stops_the_run_with_the_nodes_own_exception(runner, records):
    marker: list[str] = []
    catalog = DataCatalog({"in": MemoryDataset(1)})
    with pytest.raises(ValueError, match="bad input 1"):
        runner().run(_failing(marker), catalog)
    assert marker == []  # no node ran after the failure
    hint = [r.getMessage() for r in records if "--from-nodes" in r.getMessage()]
    assert len(hint) == 1
    assert "There are 3 nodes that have not run." in hint[0]


@pytest.fixture
def records():
    """The records the runners log (on the loggers themselves: the project's logging
    configuration may keep Kedro's records from propagating to pytest's caplog)."""
    caught: list[logging.LogRecord] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            caught.append(record)

    handler = Catch(logging.INFO)
    loggers = [logging.getLogger("kedro.runner")]  # BrainsetRunner's lines too
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    yield caught
    for lg, level in zip(loggers, levels, strict=True):
        lg.removeHandler(handler)
        lg.setLevel(level)


@pytest.mark.parametrize("is_async", [False, True])
def test_log_lines_are_kedros(records, is_async):
    lines = {}
    for runner in RUNNERS:
        records.clear()
        pipeline, catalog = _chain([])
        runner(is_async=is_async).run(pipeline, catalog)
        # "... completed successfully in 0.1 sec.": the time may differ.
        lines[runner] = [
            re.sub(r"in [\d.]+ sec", "in N sec", r.getMessage()) for r in records
        ]
    assert lines[BrainsetRunner] == lines[SequentialRunner]
    assert "Completed 5 out of 5 tasks" in lines[BrainsetRunner]
    mode = "Asynchronous mode is enabled" if is_async else "Using synchronous mode"
    assert any(line.startswith(mode) for line in lines[BrainsetRunner])


def test_only_missing_outputs_skips_nodes_whose_outputs_exist(tmp_path):
    ran: dict[type, list[str]] = {}
    for runner in RUNNERS:
        calls: list[str] = []

        def make(name, calls=calls):
            def func(x):
                calls.append(name)
                return x

            return func

        saved = CSVDataset(filepath=str(tmp_path / f"{runner.__name__}.csv"))
        saved.save(pd.DataFrame({"x": [1]}))
        missing = CSVDataset(filepath=str(tmp_path / f"{runner.__name__}_out.csv"))
        catalog = DataCatalog(
            {
                "in": MemoryDataset(pd.DataFrame({"x": [1]})),
                "saved": saved,
                "out": missing,
            }
        )
        pipeline = Pipeline(
            [
                node(make("first"), "in", "saved", name="first"),
                node(make("second"), "saved", "out", name="second"),
            ]
        )
        runner().run(pipeline, catalog, only_missing_outputs=True)
        ran[runner] = calls
    assert ran[BrainsetRunner] == ran[SequentialRunner] == ["second"]


class ErrorHooks:
    def __init__(self):
        self.errors: list[BaseException] = []

    @hook_impl
    def on_node_error(self, error, node):
        self.errors.append(error)


def test_hooks_see_the_nodes_own_exception():
    hooks = ErrorHooks()
    manager = _create_hook_manager()
    manager.register(hooks)
    with pytest.raises(ValueError):
        BrainsetRunner().run(
            _failing([]), DataCatalog({"in": MemoryDataset(1)}), manager
        )
    assert [type(e) for e in hooks.errors] == [ValueError]


def test_a_catalog_without_parameters():
    pipeline, catalog = _chain([])
    assert "parameters" not in catalog
    BrainsetRunner().run(pipeline, catalog)
    assert catalog.load("d") == 1


def _brainset_catalog(tmp_path, params: dict) -> DataCatalog:
    return brainset_catalog(
        tmp_path, "toy", {"toy": params, "brainsets": {"n_jobs": 2}}
    )


@pytest.mark.parametrize("runner", [SequentialRunner, ThreadRunner, ParallelRunner])
def test_kedros_runners_run_brainset_pipelines(tmp_path, runner):
    # ParallelRunner passes outputs between processes through a shared memory
    # catalog, as `kedro run --runner=ParallelRunner` makes it.
    kind = SharedMemoryDataCatalog if runner is ParallelRunner else DataCatalog
    parameters = {"toy": {"n_assets": 3}, "brainsets": {}}
    catalog = brainset_catalog(tmp_path, "toy", parameters, kind=kind)
    runner().run(create_brainset_pipeline(Toy), catalog)
    report = pd.read_parquet(tmp_path / "report.pq")
    assert list(report.index) == ["a_00", "a_01", "a_02"]
    assert (report["status"] == "DONE").all()
    assert sorted(p.name for p in (tmp_path / "proc" / "toy").glob("*.txt")) == [
        "a_00.txt",
        "a_01.txt",
        "a_02.txt",
    ]


def test_a_failed_brainset_does_not_stop_the_other_nodes(tmp_path):
    """A brainset's failed assets fail its process node, and the run, at the end;
    the nodes that do not need it still run, also those after it."""
    ran: list[str] = []

    def step(x):
        ran.append("step")
        return x

    catalog = _brainset_catalog(tmp_path, {"n_assets": 3, "fail": "a_01"})
    catalog["s0"] = 1
    steps = [node(step, f"s{i}", f"s{i + 1}", name=f"step_{i}") for i in range(5)]
    pipeline = create_brainset_pipeline(Toy) + Pipeline(steps)
    with pytest.raises(Exception, match="1 of 3 assets of brainset 'toy' failed"):
        # In threads: the order of the nodes is the point, not worker processes.
        BrainsetRunner(n_jobs=2, backend="threading").run(pipeline, catalog)
    assert ran == ["step"] * 5  # the last steps run after toy.process failed


@pytest.mark.parametrize("runner", [SequentialRunner, BrainsetRunner])
def test_a_bad_run_option_stops_the_run_before_any_work(tmp_path, runner):
    manager = _create_hook_manager()
    manager.register(LockBrainsets())  # as settings.py registers it
    catalog = _brainset_catalog(tmp_path, {"n_assets": 2})
    set_parameters(catalog, {"toy": {"n_assets": 2}, "brainsets": {"n_job": 2}})
    with pytest.raises(UsageError, match=r"Unknown run option\(s\) brainsets\.n_job"):
        runner().run(create_brainset_pipeline(Toy), catalog, manager)
    assert not (tmp_path / "raw" / "toy" / "manifest_made_at").exists()
