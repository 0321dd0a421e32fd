"""Each private API the project relies on still exists in the installed versions."""

import ast
import importlib
import threading

import pytest

from brainsets_kedro._compat import missing
from brainsets_kedro._compat.python import parse_python

MODULES = ["kedro", "kedro_datasets", "python"]


@pytest.mark.parametrize("library", MODULES)
def test_private_names_still_exist(library):
    module = importlib.import_module(f"brainsets_kedro._compat.{library}")
    gone = missing(module.CHECKED)
    assert not gone, (
        f"{module.__name__}: these private names are gone in the installed version; "
        f"update the module: {gone}"
    )


def test_a_vanished_name_is_reported():
    assert missing({"json.JSONDecoder.no_such_private": "any"}) == [
        "json.JSONDecoder.no_such_private"
    ]
    assert missing({"no_such_module_xyz._private": "any"}) == [
        "no_such_module_xyz._private"
    ]


def test_python_is_parsed_one_call_at_a_time(monkeypatch):
    """CPython 3.11's AST constructor fails when two threads build trees at once
    (SystemError: AST constructor recursion depth mismatch): parse_python never lets
    two ast.parse calls overlap. The race itself is too rare to provoke here; the
    overlap is what is checked, with an ast.parse that takes its time."""
    real_parse, inside, most = ast.parse, [], []
    entered = threading.Barrier(2, timeout=0.2)

    def slow_parse(*args, **kwargs):
        inside.append(threading.get_ident())
        most.append(len(inside))
        try:  # waits for another caller inside: only there if not serialised
            entered.wait()
        except threading.BrokenBarrierError:
            pass
        inside.remove(threading.get_ident())
        return real_parse(*args, **kwargs)

    monkeypatch.setattr(ast, "parse", slow_parse)
    threads = [threading.Thread(target=parse_python, args=("x = 1",)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(most) == 2 and max(most) == 1, most
