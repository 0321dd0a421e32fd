"""Reading a ``pipeline.py`` without running it: its ``brainset_id``, its parser and its inline metadata."""

from __future__ import annotations

import argparse
import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brainsets_kedro._compat.python import parse_python
from brainsets_kedro.errors import InlineMetadataError
from brainsets_kedro.upstream.metadata import read_inline_metadata

_PARSER_TYPES: dict[str, Any] = {
    "int": int,
    "float": float,
    "str": str,
    "Path": Path,
    "pathlib.Path": Path,
}


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        owner = _dotted(node.value)
        return f"{owner}.{node.attr}" if owner else None
    return None


def _literal(node: ast.AST) -> Any:
    """The value of a literal expression, or :data:`_NOT_LITERAL`."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NOT_LITERAL


_NOT_LITERAL = object()


class ComputedDefault:
    """An option's default that ``pipeline.py`` computes (``default=DEFAULT_BIN``),
    unknown until the file runs. Its parameter is left out of the parameters file,
    so that the parser's real default applies at run time."""

    def __init__(self, source: str):
        self.source = source

    def __repr__(self) -> str:
        return self.source


def _static_parsers(tree: ast.Module) -> dict[str, argparse.ArgumentParser]:
    """The module-level ``name = ArgumentParser(...)`` of a module, with the
    ``name.add_argument(...)`` calls made on them whose arguments are literals
    (``type=`` may also name a builtin type or ``Path``; a ``default=`` that is not
    a literal is a :class:`ComputedDefault`; other keywords that are not literals
    are left out)."""
    parsers: dict[str, argparse.ArgumentParser] = {}
    for stmt in tree.body:
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
            and isinstance(stmt.value, ast.Call)
            and _dotted(stmt.value.func)
            in ("ArgumentParser", "argparse.ArgumentParser")
        ):
            kwargs = {
                k.arg: v
                for k in stmt.value.keywords
                if k.arg in ("description", "prog", "epilog")
                and (v := _literal(k.value)) is not _NOT_LITERAL
            }
            parsers[stmt.targets[0].id] = argparse.ArgumentParser(**kwargs)
        elif (
            isinstance(stmt, ast.Expr)
            and isinstance(stmt.value, ast.Call)
            and isinstance(stmt.value.func, ast.Attribute)
            and stmt.value.func.attr == "add_argument"
            and _dotted(stmt.value.func.value) in parsers
        ):
            call = stmt.value
            args = [_literal(a) for a in call.args]
            if _NOT_LITERAL in args:
                continue
            kwargs = {}
            for keyword in call.keywords:
                if keyword.arg is None:
                    continue
                if keyword.arg == "type":
                    kind = _PARSER_TYPES.get(_dotted(keyword.value) or "")
                    if kind is not None:
                        kwargs["type"] = kind
                    continue
                value = _literal(keyword.value)
                if value is not _NOT_LITERAL:
                    kwargs[keyword.arg] = value
                elif keyword.arg == "default":
                    kwargs["default"] = ComputedDefault(ast.unparse(keyword.value))
            owner = _dotted(stmt.value.func.value)
            try:
                parsers[str(owner)].add_argument(*args, **kwargs)
            except (TypeError, ValueError, argparse.ArgumentError):
                continue
    return parsers


@dataclass(frozen=True)
class StaticPipeline:
    """What a ``pipeline.py`` says about its ``Pipeline`` class, read without
    running it."""

    brainset_id: str | None
    parser: argparse.ArgumentParser | None
    metadata: dict | None


def read_pipeline_file(path: Path) -> StaticPipeline | None:
    """Read ``path``'s top-level ``class Pipeline``: its literal ``brainset_id``, its
    ``parser`` (when built at module level from literals) and the file's inline
    metadata. ``None`` when the file defines no such class or cannot be parsed."""
    try:
        source = path.read_text(encoding="utf-8")
        tree = parse_python(source, filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return None
    cls = next(
        (s for s in tree.body if isinstance(s, ast.ClassDef) and s.name == "Pipeline"),
        None,
    )
    if cls is None:
        return None
    brainset_id = parser_name = None
    for stmt in cls.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target, value = stmt.targets[0], stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            target, value = stmt.target, stmt.value
        else:
            continue
        if not isinstance(target, ast.Name):
            continue
        if target.id == "brainset_id":
            literal = _literal(value)
            brainset_id = literal if isinstance(literal, str) else None
        elif target.id == "parser":
            parser_name = _dotted(value)
    parser = _static_parsers(tree).get(parser_name) if parser_name else None
    try:
        meta = read_inline_metadata(source, str(path))
    except InlineMetadataError:
        meta = None  # reported when the brainset runs
    return StaticPipeline(brainset_id, parser, meta)
