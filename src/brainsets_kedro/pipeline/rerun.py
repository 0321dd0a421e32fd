"""Which assets a run prepares, and why: one decision per asset, from the ledger.

Each asset of the manifest is, from its last record in the brainset's ledger
(:mod:`brainsets_kedro.pipeline.ledger`):

- *up to date*: DONE, and no part of its fingerprint named by ``brainsets.rerun_on``
  changed since (:mod:`brainsets_kedro.pipeline.fingerprint`): neither ``download`` nor
  ``process`` is called; it is reported ``UP TO DATE``;
- *stale*: DONE, but such a part changed: prepared again;
- *incomplete*: it started and never finished (killed, interrupted): prepared again;
- *failed*, *downloaded* (by a ``download_only`` run): prepared again;
- *missing*: no record, and no output: prepared.

An asset with no record whose output exists (a ``.h5`` under the processed directory
named by its asset id) was prepared before the ledger existed (or by ``brainsets prepare``): it is *adopted*,
recorded as it is with the run's fingerprint, and not prepared again.

Because torch_brain's pipelines skip an output that exists, an asset prepared again
after a record gets the brainset's ``reprocess`` option for itself alone (and
``redownload`` when its input changed or its download was interrupted), when its
parser has them; a brainset without them gets a warning naming the assets it may
skip. A brainset run with its own ``reprocess`` (or ``redownload``) parameter set
prepares every selected asset again.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from brainsets_kedro.pipeline.fingerprint import (
    Fingerprint,
    canonical_row,
    input_changes,
    run_changes,
)
from brainsets_kedro.pipeline.ledger import (
    SUFFIX,
    AssetRecord,
    LedgerState,
    processed_files,
    read_ledger,
)
from brainsets_kedro.pipeline.params import parser_defaults
from brainsets_kedro.pipeline.selection import shown_ids
from brainsets_kedro.worker.job import BrainsetJob
from brainsets_kedro.worker.result import ADOPT, DECISION_COLUMN, SKIP

logger = logging.getLogger(__name__)

UP_TO_DATE = "up to date"
STALE = "stale"
INCOMPLETE = "incomplete"
FAILED = "failed"
DOWNLOADED = "downloaded"
MISSING = "missing"
STATES = (UP_TO_DATE, STALE, INCOMPLETE, FAILED, DOWNLOADED, MISSING)
OPTIONS = ("reprocess", "redownload")


@dataclass(frozen=True)
class Decision:
    """What a run does with one asset, and why."""

    state: str
    reason: str = ""
    """For ``kedro brainset status --explain``: ``params gain 1.0 -> 2.0``."""
    notes: str = ""
    """Parts that changed and that ``brainsets.rerun_on`` does not list (by default
    code, packages): shown, they do not make it stale."""
    options: tuple[str, ...] = ()
    """The brainset options it needs for itself: ``reprocess``, ``redownload``."""
    adopt: bool = False

    @property
    def runs(self) -> bool:
        return self.state != UP_TO_DATE


def decide(
    pipeline_cls: type[Any],
    args: Any,
    rows: pd.DataFrame,
    *,
    processed_dir: Path,
    raw_dir: Path | None,
    triggers: Iterable[str],
    state: LedgerState | None = None,
) -> dict[Any, Decision]:
    """The decision for each asset of ``rows``.

    Args:
        pipeline_cls: The brainset's Pipeline class.
        args: Its parsed parameters.
        rows: The manifest rows (indexed by asset id).
        processed_dir: Its processed directory (its ledger, its outputs).
        raw_dir: Its raw directory, where the files ``download`` returned are
            stat-ed (``None``: they are not).
        triggers: ``brainsets.rerun_on``.
        state: The ledger, if read already.

    Returns:
        ``{asset id: Decision}``, in the order of ``rows``.
    """
    if state is None:
        state = read_ledger(processed_dir, pipeline_cls.brainset_id)
    current = Fingerprint.of(pipeline_cls, args)
    triggers = set(triggers)
    columns = tuple(map(str, rows.columns))
    outputs: set[str] | None = None
    decisions, by_run = {}, {}
    for asset_id, values in zip(
        rows.index, rows.itertuples(index=False, name=None), strict=True
    ):
        key = str(asset_id)
        record = state.assets.get(key)
        if record is not None:
            changed = {}
            if record.done is not None:
                run = record.done.get("r")
                if run not in by_run:  # the same for every asset of that run
                    by_run[run] = run_changes(record.run, current)
                row = canonical_row(columns, values)
                changed = {**by_run[run], **input_changes(record.done, row, raw_dir)}
            decisions[asset_id] = _from_record(record, changed, triggers)
            continue
        if outputs is None:
            outputs = _output_names(Path(processed_dir))
        if key in outputs:
            decisions[asset_id] = Decision(UP_TO_DATE, "adopted", adopt=True)
        else:
            decisions[asset_id] = Decision(MISSING, "no output yet")
    return decisions


def _from_record(
    record: AssetRecord, changed: Mapping[str, str], triggers: set[str]
) -> Decision:
    """The decision for an asset the ledger knows, given what changed since it
    was last DONE."""
    options = OPTIONS if "input" in changed else ("reprocess",)
    if record.event == "fetch":  # what its download wrote may be cut short too
        return Decision(
            INCOMPLETE,
            f"download interrupted (started {_when(record.time)})",
            "",
            OPTIONS,
        )
    if record.event == "start":
        return Decision(
            INCOMPLETE, f"interrupted (started {_when(record.time)})", "", options
        )
    if record.event == "failed":
        return Decision(FAILED, record.error or "", "", options)
    if record.event == "downloaded":
        return Decision(DOWNLOADED, "not processed", "", options)
    stale = "; ".join(why for part, why in changed.items() if part in triggers)
    notes = "; ".join(why for part, why in changed.items() if part not in triggers)
    if stale:
        return Decision(STALE, stale, notes, options)
    return Decision(UP_TO_DATE, "", notes)


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "at an unknown time"
    when = pd.Timestamp(timestamp, unit="s", tz="UTC")
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def _output_names(processed_dir: Path) -> set[str]:
    """The names an output made before the ledger may carry: each ``.h5`` file's
    path under ``processed_dir`` without the suffix, and its stem."""
    if not processed_dir.is_dir():
        return set()
    names = set()
    for path in processed_files(processed_dir):
        names.add(path.relative_to(processed_dir).as_posix()[: -len(SUFFIX)])
        names.add(path.stem)
    return names


def counts(decisions: Mapping[Any, Decision]) -> Counter:
    """How many assets are in each state."""
    return Counter(d.state for d in decisions.values())


def with_decisions(
    job: BrainsetJob, rows: pd.DataFrame, triggers: Iterable[str]
) -> pd.DataFrame:
    """``rows`` with the :data:`~brainsets_kedro.worker.result.DECISION_COLUMN` that
    :meth:`BrainsetJob.run` obeys, decided from the ledger (see the module); logs
    what the run prepares and why, and warns for a brainset without ``reprocess``
    about the assets it may skip."""
    decisions = decide(
        job.pipeline_cls,
        job.args,
        rows,
        processed_dir=job.processed_dir,
        raw_dir=job.raw_dir,
        triggers=triggers,
    )
    args = vars(job.args) if job.args is not None else {}
    forced = any(args.get(option) for option in OPTIONS)
    has = set(parser_defaults(job.pipeline_cls.parser)) & set(OPTIONS)
    column, lacking = [], []
    for asset_id, decision in decisions.items():
        if forced:  # the brainset's own reprocess/redownload: every asset again
            column.append("")
        elif not decision.runs:
            column.append(ADOPT if decision.adopt else SKIP)
        else:
            column.append(" ".join(o for o in decision.options if o in has))
            if decision.options and "reprocess" not in has:
                lacking.append(asset_id)
    _log_plan(job.brainset_id, decisions, forced)
    if lacking:
        logger.warning(
            "Brainset '%s' has no 'reprocess' option: its process may skip the "
            "existing outputs of %s (incomplete, stale or failed). Delete those "
            "outputs first, or give its parser a --reprocess flag that rewrites them.",
            job.brainset_id,
            shown_ids(lacking),
            extra={"markup": False},
        )
    planned = rows.copy(deep=False)
    planned[DECISION_COLUMN] = column
    return planned


def _log_plan(
    brainset_id: str, decisions: Mapping[Any, Decision], forced: bool
) -> None:
    counted = counts(decisions)
    if forced:
        logger.info(
            "Brainset '%s': its reprocess/redownload parameter is set: all %d "
            "selected assets are prepared again.",
            brainset_id,
            len(decisions),
        )
        return
    if counted[MISSING] == len(decisions):
        return  # a first run: nothing to say
    reasons = {d.state: d.reason for d in decisions.values() if d.state == STALE}
    parts = ", ".join(
        f"{counted[s]} {s}" + (f" ({reasons[s]})" if s in reasons else "")
        for s in STATES
        if counted[s]
    )
    adopted = sum(d.adopt for d in decisions.values())
    logger.info(
        "Brainset '%s': %s%s.",
        brainset_id,
        parts,
        f" ({adopted} prepared before the ledger, adopted)" if adopted else "",
        extra={"markup": False},
    )
