"""An asset's result crosses processes whole."""

import dataclasses
import pickle

from brainsets_kedro.worker.result import AssetResult


def test_a_result_pickles_with_every_field():
    values = {
        field.name: f"value of {field.name}"
        for field in dataclasses.fields(AssetResult)
    }
    result = AssetResult(**values)
    assert dataclasses.asdict(pickle.loads(pickle.dumps(result))) == values
