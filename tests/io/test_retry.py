"""The one retry helper: the count, the backoff, and loops that nest without
multiplying their attempts."""

import pickle

import pytest

from brainsets_kedro.io.retry import Retries, gave_up, give_up, retrying


def test_a_failing_call_is_tried_retries_more_times_with_doubling_pauses(monkeypatch):
    pauses, calls, said = [], [], []
    monkeypatch.setattr("brainsets_kedro.io.retry.time.sleep", pauses.append)

    def attempt():
        calls.append(1)
        raise ValueError(f"call {len(calls)}")

    with pytest.raises(ValueError, match="call 4") as raised:
        retrying(attempt, 3, 0.5, on_retry=lambda e, n, d: said.append((str(e), n, d)))
    assert len(calls) == 4
    assert pauses == [0.5, 1.0, 2.0]
    assert said == [("call 1", 1, 0.5), ("call 2", 2, 1.0), ("call 3", 3, 2.0)]
    assert gave_up(raised.value)  # a loop around this one does not try again


def test_a_call_that_succeeds_returns_at_once():
    results = iter([ValueError("once"), "done"])

    def attempt():
        value = next(results)
        if isinstance(value, Exception):
            raise value
        return value

    assert retrying(attempt, 2, 0) == "done"


def test_nested_loops_do_not_multiply_their_attempts():
    inner_calls = []

    def inner():
        inner_calls.append(1)
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        retrying(lambda: retrying(inner, 2, 0), 5, 0)
    assert len(inner_calls) == 3  # the inner loop's 2 retries; the outer adds none


def test_progress_restarts_the_count_within_a_limit_of_attempts():
    count = Retries(retries=1, backoff=1.0, most=4)
    error = OSError("cut")
    assert count.failed(error) == 1.0
    assert count.failed(error, progressed=True) == 1.0  # further: a fresh count
    assert count.failed(error, progressed=True) == 1.0
    assert count.failed(error, progressed=True) is None  # the 4th attempt: the most
    assert count.attempts == 4


def test_the_mark_survives_pickling():
    """A download in a worker process gives up; the driver's side sees it too."""
    error = pickle.loads(pickle.dumps(give_up(ValueError("x"))))
    assert gave_up(error)
    assert not gave_up(ValueError("y"))
