"""Each private API the project relies on still exists in the installed versions."""

import importlib

import pytest

from brainsets_kedro._compat import missing

MODULES = ["kedro", "kedro_datasets", "joblib", "python"]


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
