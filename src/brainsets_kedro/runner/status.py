"""The driver's end of the status channel: it receives the statuses that workers'
:class:`~brainsets_kedro.worker.status.StatusSender` send, from threads, local
processes and other machines alike, and hands them to the run's status board.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from multiprocessing.connection import (
    Connection,
    Listener,
    answer_challenge,
    deliver_challenge,
)

from brainsets_kedro.runner.board import StatusBoard
from brainsets_kedro.worker.instances import instances
from brainsets_kedro.worker.status import StatusSender, Transferred, close_outbox

logger = logging.getLogger(__name__)

AUTH_TIMEOUT = 10.0
"""Seconds a connection to the status channel has to authenticate (a worker takes
milliseconds; a loaded machine, more)."""
MAX_UNAUTHENTICATED = 256
"""Connections authenticating at once; more are dropped at once (a flood of them
would otherwise cost a thread and a file descriptor each)."""
LISTEN_BACKLOG = 128  # connections the kernel queues until the acceptor takes them


class StatusChannel:
    """The driver's end: listens on ``host`` and hands each status to a board.

    ``host`` is 127.0.0.1 for workers on this machine; workers on other machines need
    an address of the driver they can reach (``status_host`` in the runner options).
    """

    def __init__(self, board: StatusBoard, host: str = "127.0.0.1"):
        self._board = board
        self._authkey = secrets.token_bytes(16)
        # No authkey here: Listener.accept() would run the handshake in the one
        # acceptor thread, which any local process could then hang or kill (an idle
        # connection, a wrong key). Each connection is authenticated in its own
        # thread instead, within AUTH_TIMEOUT (see _serve).
        self._listener = Listener((host, 0), backlog=LISTEN_BACKLOG)
        self._port = self._listener.address[1]  # for messages once it is closed
        self._connections: list[Connection] = []
        self._unauthenticated = 0
        self._dropped = 0
        self._connections_lock = threading.Lock()
        self._closed = False
        self._acceptor = threading.Thread(
            target=self._accept, daemon=True, name="status-accept"
        )
        self._acceptor.start()

    @property
    def sender(self) -> StatusSender:
        return StatusSender(self._listener.address, self._authkey)

    def _accept(self) -> None:
        while not self._closed:
            try:
                connection = self._listener.accept()  # no handshake: returns at once
            except OSError:  # out of file descriptors, say: try again shortly
                if self._closed:
                    return
                time.sleep(0.05)
                continue
            with self._connections_lock:
                if self._closed:  # while this connection was accepted
                    connection.close()
                    return
                crowded = self._unauthenticated >= MAX_UNAUTHENTICATED
                if not crowded:
                    self._unauthenticated += 1
                    self._connections.append(connection)
            if crowded:
                self._drop(connection, "too many connections waiting to authenticate")
                continue
            threading.Thread(
                target=self._serve,
                args=(connection,),
                daemon=True,
                name="status-recv",
            ).start()

    def _serve(self, connection: Connection) -> None:
        """Authenticate ``connection`` within :data:`AUTH_TIMEOUT`, then receive its
        statuses; a connection that fails to is dropped (and logged)."""
        authenticated = threading.Event()
        watchdog = threading.Timer(
            AUTH_TIMEOUT, self._expire, args=(connection, authenticated)
        )
        watchdog.daemon = True
        watchdog.start()
        error_text: str | None
        try:
            # What Listener.accept() does with an authkey.
            deliver_challenge(connection, self._authkey)
            answer_challenge(connection, self._authkey)
        except Exception as error:  # a wrong key, random bytes, timed out, closed
            error_text = f"{type(error).__name__}: {error}".rstrip(": ")
        else:
            error_text = None
        watchdog.cancel()
        with self._connections_lock:
            self._unauthenticated -= 1
            timed_out = authenticated.is_set()  # set by _expire when it gave up
            authenticated.set()  # from now on, _expire leaves the connection alone
            if error_text is not None:
                self._connections.remove(connection)
            closed = self._closed
        if error_text is None:
            self._receive(connection)
        elif closed:
            connection.close()
        else:
            reason = (
                f"no handshake within {AUTH_TIMEOUT:g} s" if timed_out else error_text
            )
            self._drop(connection, reason)

    def _expire(self, connection: Connection, authenticated: threading.Event) -> None:
        """A connection that has not authenticated in time: shutting its socket down
        wakes the handshake, blocked in a read, which then fails."""
        with self._connections_lock:
            if not authenticated.is_set():
                authenticated.set()  # tells _serve why the handshake failed
                _shutdown(connection)

    def _drop(self, connection: Connection, reason: str) -> None:
        """Close a connection that did not authenticate; the first is logged with
        its peer, the others counted and logged at :meth:`close`."""
        with self._connections_lock:
            self._dropped += 1
            first = self._dropped == 1
        if first:
            try:
                with socket.socket(fileno=os.dup(connection.fileno())) as peer:
                    where = ":".join(map(str, peer.getpeername()[:2]))
            except OSError:
                where = "an unknown address"
            logger.warning(
                "Status channel: dropped a connection from %s that is not one of "
                "this run's workers (%s); the run goes on. Another local process "
                "is probing or misusing the port %s.",
                where,
                reason,
                self._port,
                extra={"markup": False},
            )
        connection.close()

    def _receive(self, connection: Connection) -> None:
        try:
            while True:
                for event in connection.recv():
                    if type(event) is Transferred:
                        self._board.transferred(event.nbytes)
                    else:
                        self._board.update(*event)
        except Exception:  # noqa: BLE001, S110 (the worker went away, or the channel closed)
            pass
        finally:
            with self._connections_lock:
                self._connections.remove(connection)
                connection.close()

    def close(self) -> None:
        with self._connections_lock:
            self._closed = True
        close_outbox(self._listener.address)  # workers in this process (threads)
        instances.forget(self.sender)  # the Pipeline instances of this run's threads
        # Closing the listener does not wake its accept(): a connection does, which
        # then fails the handshake, and the acceptor sees the channel closed.
        with (
            contextlib.suppress(OSError),
            socket.create_connection(self._listener.address, timeout=1),
        ):
            pass
        self._acceptor.join(timeout=1)
        self._listener.close()
        # Shutting a socket down wakes its reader, blocked in recv (closing it would
        # not), and the reader closes its connection.
        with self._connections_lock:
            for connection in self._connections:
                _shutdown(connection)
        if self._dropped > 1:
            logger.warning(
                "Status channel: dropped %d connections in all that were not this "
                "run's workers.",
                self._dropped,
            )

    def __enter__(self) -> StatusChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _shutdown(connection: Connection) -> None:
    """Shut ``connection``'s socket down: wakes a thread blocked reading it (closing
    it would not)."""
    with (
        contextlib.suppress(OSError),
        socket.socket(fileno=os.dup(connection.fileno())) as duplicate,
    ):
        duplicate.shutdown(socket.SHUT_RDWR)
