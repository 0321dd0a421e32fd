"""Strangers on the status channel's port: real socket clients against a real
channel, and against a real run (issue 22, item 1)."""

import logging
import os
import socket
import threading
import time
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client

import pytest

from brainsets_kedro.runner import pool, status
from brainsets_kedro.runner.board import StatusBoard
from brainsets_kedro.runner.status import StatusChannel
from tests.conftest import poll_for
from tests.runner.test_reliability import _run


def _attack(address, many=200):
    """Strangers: idle TCP connections, a Client with a wrong key, random bytes, and
    ``many`` connections at once. Returns the sockets left open (idle)."""
    idle = [socket.create_connection(address) for _ in range(many)]
    with pytest.raises((AuthenticationError, EOFError, OSError)):
        Client(address, authkey=b"not the key")
    with socket.create_connection(address) as noise:
        noise.sendall(os.urandom(4096))
    return idle


def test_strangers_do_not_stop_a_worker_from_reporting(monkeypatch, caplog):
    monkeypatch.setattr(status, "AUTH_TIMEOUT", 0.5)
    board = StatusBoard(total=1)
    with StatusChannel(board) as channel, caplog.at_level(logging.WARNING):
        idle = _attack(channel.sender.address)
        try:
            sender = channel.sender
            with Client(sender.address, authkey=sender.authkey) as worker:
                worker.send([("toy", "a_00", "DOWNLOADING")])
                poll_for(lambda: board.in_flight() == {("toy", "a_00")})
            # The idle ones are dropped once their time is up.
            for connection in idle:
                connection.settimeout(10)
                assert connection.recv(1 << 16) is not None
                while connection.recv(1 << 16):
                    pass  # the challenge, then EOF
            poll_for(lambda: channel._dropped == 202)  # the others, dropped at once
        finally:
            for connection in idle:
                connection.close()
    dropped = [r for r in caplog.records if "Status channel: dropped" in r.message]
    assert len(dropped) == 2  # the first, then the count at close
    assert "127.0.0.1" in dropped[0].message
    assert "dropped 202 connections in all" in dropped[1].message


def test_a_connection_that_never_authenticates_is_dropped_in_time(monkeypatch):
    monkeypatch.setattr(status, "AUTH_TIMEOUT", 0.5)
    with StatusChannel(StatusBoard(total=1)) as channel:
        with socket.create_connection(channel.sender.address) as idle:
            idle.settimeout(10)
            started = time.monotonic()
            while idle.recv(1 << 16):  # the challenge, then EOF when dropped
                pass
            assert time.monotonic() - started < 10


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_a_run_completes_with_strangers_on_its_status_port(
    tmp_path, monkeypatch, backend
):
    """The strangers connect as soon as the driver listens, before any worker."""
    monkeypatch.setattr(status, "AUTH_TIMEOUT", 1.0)
    opened = []

    class Attacked(StatusChannel):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            opened.extend(_attack(self.sender.address, many=50))

    monkeypatch.setattr(pool, "StatusChannel", Attacked)
    try:
        from brainsets_kedro.runner.runner import BrainsetRunner  # noqa: PLC0415

        catalog = _run(
            tmp_path, {"n_assets": 6}, {}, BrainsetRunner(n_jobs=2, backend=backend)
        )
    finally:
        for connection in opened:
            connection.close()
    report = catalog.load("toy.run_report")
    assert (report["status"] == "DONE").all() and len(report) == 6
    assert not [t for t in threading.enumerate() if t.name == "status-accept"]
