"""MkDocs hook: the reference tables that are made from the code, so that they
never drift from it. A page asks for one with a comment on a line of its own,
``<!-- reference: run-settings -->``, ``<!-- reference: report-columns -->`` or
``<!-- reference: card-columns -->``; the build fails on an unknown name, and on a
run setting whose docstring does not describe it."""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable
from typing import Any

from griffe import Docstring, DocstringSectionKind
from mkdocs.exceptions import PluginError

_PLACEHOLDER = re.compile(r"^<!-- reference: ([\w-]+) -->$", re.MULTILINE)


def _markdown(text: str, module: Any) -> str:
    """A docstring's reST-style markup as Markdown, on one line; a constant of
    ``module`` it names (``:data:`DOWNLOAD_JOBS```) as its value."""

    def role(match: re.Match) -> str:
        kind, name = match.groups()
        if kind == "data" and hasattr(module, name):
            return f"`{_yaml(getattr(module, name))}`"
        return f"`{name}`"

    text = re.sub(r":(\w+):`~?([^`]+)`", role, text).replace("``None``", "``null``")
    return " ".join(text.replace("``", "`").split())


def _yaml(value: Any) -> str:
    """``value`` as YAML writes it (0 and 1 are not false and true)."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return str(value)


def _default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def run_settings() -> str:
    from brainsets_kedro.pipeline import run_settings as module  # noqa: PLC0415
    from brainsets_kedro.pipeline.run_settings import RunSettings  # noqa: PLC0415
    from brainsets_kedro.runner import BrainsetRunner  # noqa: PLC0415

    # The settings --runner-params sets: the runner's own arguments.
    runner_params = set(inspect.signature(BrainsetRunner).parameters) - {"is_async"}

    sections = Docstring(inspect.cleandoc(RunSettings.__doc__), lineno=1).parse(
        "google"
    )
    described = {
        attribute.name: attribute.description
        for section in sections
        if section.kind is DocstringSectionKind.attributes
        for attribute in section.value
    }
    rows = [
        "| parameter | meaning | default | `--runner-params` |",
        "| --- | --- | --- | --- |",
    ]
    for field in dataclasses.fields(RunSettings):
        if not described.get(field.name):
            raise PluginError(
                f"RunSettings.{field.name} is not described in the Attributes of "
                "RunSettings' docstring (src/brainsets_kedro/pipeline/run_settings.py)."
            )
        rows.append(
            f"| `brainsets.{field.name}` | {_markdown(described[field.name], module)} "
            f"| `{_yaml(_default(field))}` "
            f"| {'yes' if field.name in runner_params else ''} |"
        )
    return "\n".join(rows)


def _columns(meanings: dict[str, str]) -> str:
    rows = ["| column | meaning |", "| --- | --- |"]
    rows += [f"| `{name}` | {meaning} |" for name, meaning in meanings.items()]
    return "\n".join(rows)


def report_columns() -> str:
    from brainsets_kedro.pipeline.report import REPORT_COLUMN_MEANINGS  # noqa: PLC0415

    return _columns(REPORT_COLUMN_MEANINGS)


def card_columns() -> str:
    from brainsets_kedro.pipeline.card import CARD_COLUMN_MEANINGS  # noqa: PLC0415
    from brainsets_kedro.pipeline.provenance import (  # noqa: PLC0415
        PROVENANCE_COLUMN_MEANINGS,
    )

    asset = {"asset_id": "the asset the file is named after, if any"}
    return _columns({**CARD_COLUMN_MEANINGS, **asset, **PROVENANCE_COLUMN_MEANINGS})


TABLES: dict[str, Callable[[], str]] = {
    "run-settings": run_settings,
    "report-columns": report_columns,
    "card-columns": card_columns,
}


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    def table(match: re.Match) -> str:
        name = match.group(1)
        if name not in TABLES:
            raise PluginError(
                f"{page.file.src_path}: no reference table '{name}' "
                f"(known: {', '.join(TABLES)})."
            )
        return TABLES[name]()

    return _PLACEHOLDER.sub(table, markdown)


_HTML = set(
    "a b br code dd div dl dt em h1 h2 h3 h4 h5 h6 hr i li ol p pre span strong "
    "table tbody td th thead tr ul".split()
)


def on_page_content(html: str, page: Any, **kwargs: Any) -> str:
    """The commands' help (mkdocs-click renders it as Markdown) names placeholders
    such as ``pipelines/<brainset_id>/``: shown as typed, not taken for HTML tags."""
    if page.file.src_uri != "reference/cli.md":
        return html
    return re.sub(
        r"<([a-z_]+)>",
        lambda tag: tag[0] if tag[1] in _HTML else f"&lt;{tag[1]}&gt;",
        html,
    )
