"""``brainsets.only``: which assets a run prepares.

One or more glob patterns separated by ``|`` (``sess_01``, ``sess_0*``, ``a|b``). A
pattern qualified with a brainset id (``my_brainset:sess_01``) applies to that brainset
only; an unqualified one applies to every brainset in the run, and is an error only if
it matches nothing in any of them. A YAML list is a list of exact asset ids (no
patterns); ``failed`` is turned into such a list per brainset, from its last run
report, by :class:`brainsets_kedro.framework.hooks.RerunFailed`. ``id:<asset id>`` selects that
one asset id literally, whatever it holds (``|``, ``:``, ``*``, or ``failed``): the
whole rest of the value is the id; it is an error only if no brainset of the run has
it. (So a string cannot qualify a pattern with a brainset named ``id``.)
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from brainsets_kedro.errors import UsageError

SHOWN_IDS = 20  # asset ids an error message lists before "..."
LITERAL = "id:"  # brainsets.only=id:<asset id>: that id, taken literally


def shown_ids(ids: Iterable) -> str:
    """A few asset ids for an error message."""
    ids = [str(i) for i in ids]
    shown = ", ".join(ids[:SHOWN_IDS]) + (" ..." if len(ids) > SHOWN_IDS else "")
    return shown or "(none)"


@dataclass
class Selection:
    unqualified: list[str] = field(default_factory=list)
    qualified: dict[str, list[str]] = field(default_factory=dict)
    exact: list[str] | None = None
    literal: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, only: str | list | None) -> Selection | None:
        """``None`` (or an empty string) selects every asset."""
        if isinstance(only, list | tuple):
            return cls(exact=[str(asset_id) for asset_id in only])
        if only is None or not str(only).strip():
            return None
        if str(only).startswith(LITERAL):
            return cls(literal=[str(only)[len(LITERAL) :]])
        selection = cls()
        for pattern in (p.strip() for p in str(only).split("|") if p.strip()):
            brainset_id, colon, asset_pattern = pattern.partition(":")
            if colon and brainset_id.isidentifier():
                selection.qualified.setdefault(brainset_id, []).append(asset_pattern)
            else:
                selection.unqualified.append(pattern)
        return selection

    def select(
        self, manifest: pd.DataFrame, brainset_id: str
    ) -> tuple[pd.DataFrame, set[str]]:
        """The rows of ``brainset_id``'s manifest this selection picks, and the
        unqualified patterns that matched none of them. A qualified pattern that
        matches nothing is an error at once."""
        ids = manifest.index.map(str)
        if self.exact is not None:
            unknown = sorted(set(self.exact) - set(ids))
            if unknown:
                raise UsageError(
                    f"brainsets.only: asset id(s) {shown_ids(unknown)} are not in the "
                    f"manifest of brainset '{brainset_id}'. Its asset ids: "
                    f"{shown_ids(ids)}."
                )
            return manifest[ids.isin(self.exact)], set()
        selected = np.zeros(len(manifest), dtype=bool)
        unmatched = set()
        qualified = self.qualified.get(brainset_id, [])
        matches: pd.Series | pd.Index
        for pattern in self.unqualified + qualified + self.literal:
            if pattern in self.literal:
                matches = pd.Series(ids == pattern)
                pattern = f"{LITERAL}{pattern}"  # noqa: PLW2901 (as messages show it)
            else:
                matches = pd.Index([fnmatch.fnmatchcase(a, pattern) for a in ids])
            if matches.any():
                selected |= matches.to_numpy()
            elif pattern in qualified:
                raise UsageError(
                    f"brainsets.only: pattern '{brainset_id}:{pattern}' matches no "
                    f"asset of brainset '{brainset_id}'. Its asset ids: "
                    f"{shown_ids(ids)}."
                )
            else:
                unmatched.add(pattern)
        return manifest[selected], unmatched

    def check_run(
        self,
        unmatched: Mapping[str, set[str]],
        asset_ids: Mapping[str, Iterable],
        brainsets: Iterable[str] | None = None,
    ) -> None:
        """Errors that need every brainset of the run: an unqualified pattern that
        matched nothing in any of them, a pattern qualified with a brainset that is
        not in the run. ``unmatched`` and ``asset_ids`` are keyed by brainset id;
        ``brainsets``: the run's brainsets, when not only those keys."""
        in_run = set(unmatched if brainsets is None else brainsets)
        unknown = sorted(set(self.qualified) - in_run)
        if unknown:
            raise UsageError(
                f"brainsets.only names brainset(s) not in this run: "
                f"{', '.join(unknown)}. Brainsets in the run: "
                f"{', '.join(sorted(in_run))}."
            )
        nowhere = sorted(set.intersection(*unmatched.values())) if unmatched else []
        if nowhere:
            examples = "; ".join(
                f"{brainset_id}: {shown_ids(ids)}"
                for brainset_id, ids in asset_ids.items()
            )
            raise UsageError(
                f"brainsets.only: pattern(s) {', '.join(map(repr, nowhere))} match no "
                f"asset of brainset(s) {', '.join(sorted(unmatched))}. Asset ids: "
                f"{examples}."
            )
