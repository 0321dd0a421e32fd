"""A brainset's error message that names one of its command-line flags, with the
Kedro parameter that sets it (the worker words an asset's error so)."""

from __future__ import annotations

import argparse
import re

from brainsets_kedro._compat.python import parser_options


def explain_flags(
    message: str, parser: argparse.ArgumentParser | None, brainset_id: str
) -> str:
    """A brainset's error message, with the Kedro parameter of each of its
    command-line flags that it names (upstream's messages say "set --on-version-
    mismatch"; here that is the parameter ``<id>.on_version_mismatch``).

    Args:
        message: The error message, as the brainset's code wrote it.
        parser: The brainset's parser (``None``: it has no options).
        brainset_id: The brainset's id.

    Returns:
        ``message``, followed by the parameters for the flags it names, if any.
    """
    if parser is None or "--" not in message:
        return message
    named = {
        flag: dest
        for dest, action in parser_options(parser).items()
        for flag in action.option_strings
        if flag.startswith("--")
        and re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", message)
    }
    if not named:
        return message
    hints = "; ".join(
        f"{flag} is the parameter {brainset_id}.{dest}" for flag, dest in named.items()
    )
    return (
        f"{message} [In Kedro: {hints}. Set it under '{brainset_id}:' in "
        f"conf/base/parameters_{brainset_id}.yml or with "
        f'--params="{brainset_id}.<name>=<value>".]'
    )
