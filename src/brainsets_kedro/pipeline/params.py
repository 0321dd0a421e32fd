"""A brainset's argparse options as Kedro parameters.

Each option is a parameter under ``<brainset_id>:`` keyed by its ``dest``
(``--n-sessions`` is ``n_sessions``). Values go through the parser itself, so types,
choices and flags behave as on the command line and a bad value gets argparse's own
message.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from collections.abc import Mapping
from typing import Any

from brainsets_kedro._compat.python import (
    AppendAction,
    CountAction,
    StoreConstAction,
    parser_options,
)
from brainsets_kedro.errors import BrainsetParameterError, UsageError


def parser_defaults(parser: argparse.ArgumentParser | None) -> dict[str, Any]:
    """The parameters a parser implies when nothing is set: ``{dest: default}``."""
    if parser is None:
        return {}
    return {dest: action.default for dest, action in parser_options(parser).items()}


def _as_words(action: argparse.Action, value: Any) -> list[str]:
    """The command-line words that give ``action`` the parameter ``value``."""
    flag = next(
        (s for s in action.option_strings if s.startswith("--")),
        action.option_strings[0] if action.option_strings else "",
    )
    if isinstance(action, CountAction):
        return [flag] * int(value)
    if isinstance(action, StoreConstAction):  # store_true/false/const
        if value == action.default:
            return []
        if value == action.const:
            return [flag]
        raise ValueError(
            f"argument {flag}: expected {action.const!r} or {action.default!r}, "
            f"got {value!r}"
        )
    values = list(value) if isinstance(value, list | tuple) else [value]
    words = [str(v) for v in values]
    if not flag:  # a positional
        return words
    if isinstance(action, AppendAction):
        return [w for v in words for w in (flag, v)]
    return [flag, *words]


def parse_params(
    parser: argparse.ArgumentParser | None,
    params: Mapping[str, Any] | None,
    brainset_id: str,
) -> argparse.Namespace | None:
    """Turn a brainset's parameters into the ``Namespace`` its parser would give.

    Absent keys take the parser's defaults. Raises :class:`BrainsetParameterError`
    for an unknown key (listing the valid ones) or a value the parser rejects.
    """
    params = dict(params or {})
    if parser is None:
        if params:
            raise BrainsetParameterError(
                f"Brainset '{brainset_id}' takes no parameters (its Pipeline has no "
                f"parser), but '{brainset_id}' sets {sorted(params)}. Remove them from "
                f"conf/ or --params, or give the Pipeline a parser."
            )
        return None

    options = parser_options(parser)
    unknown = sorted(set(params) - set(options))
    if unknown:
        raise BrainsetParameterError(
            f"Unknown parameter(s) for brainset '{brainset_id}': "
            f"{', '.join(f'{brainset_id}.{k}' for k in unknown)}. "
            f"Valid parameters: {', '.join(sorted(options)) or '(none)'}."
        )

    words: list[str] = []
    positionals: list[str] = []
    stderr = io.StringIO()
    try:
        for dest, value in params.items():
            action = options[dest]
            if value is None and action.default is None:
                continue
            target = words if action.option_strings else positionals
            target.extend(_as_words(action, value))
        with contextlib.redirect_stderr(stderr):
            return parser.parse_args(positionals + words)
    except (SystemExit, ValueError) as error:
        printed = stderr.getvalue().strip().splitlines()
        reason = printed[-1].split("error: ", 1)[-1] if printed else str(error)
        raise BrainsetParameterError(
            f"Invalid parameters for brainset '{brainset_id}': {reason} "
            f"(set under '{brainset_id}:' in conf/ or with "
            f'--params="{brainset_id}.<name>=<value>").'
        ) from None


def parameter_block(parameters: Mapping[str, Any], key: str, what: str) -> dict:
    """``parameters[key]``, which must be a mapping of ``what`` (absent or null:
    empty)."""
    block = parameters.get(key) or {}
    if not isinstance(block, Mapping):
        raise UsageError(
            f"Parameters '{key}' must be a mapping of {what}, got "
            f"{type(block).__name__}: {block!r}."
        )
    return dict(block)
