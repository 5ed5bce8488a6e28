"""Listening sockets bound once and adopted by another process (``--ingest-processes``, ``--status-processes``)."""

from __future__ import annotations

import os
import socket

import pytest

from scanq.api.listeners import LISTEN_FDS_ENV, adopt, close, handoff_environ, listen_shared
from scanq.config import Settings
from scanq.exceptions import ConfigError, StartupError


def test_a_shared_listener_is_adopted_from_the_environment_and_accepts() -> None:
    [listener] = listen_shared("127.0.0.1", 0)
    try:
        environ = handoff_environ([listener])
        assert environ == {LISTEN_FDS_ENV: str(listener.fileno())}
        # What a child does with the inherited descriptor (here a duplicate, so that each copy closes on its own).
        environ[LISTEN_FDS_ENV] = str(os.dup(listener.fileno()))
        [adopted] = adopt(environ)
        with adopted:
            assert environ == {}  # read once: nothing the child starts takes the descriptors for its own
            assert adopted.getsockname() == listener.getsockname()
            # Listening since the parent bound it: a client connects before any child has called listen().
            with socket.create_connection(listener.getsockname(), timeout=5):
                connection, _ = adopted.accept()
                connection.close()
    finally:
        close([listener])


def test_a_shared_listener_reaches_only_the_children_started_with_it() -> None:
    # Not inheritable: uvloop (the supervisor's loop) hands every inheritable descriptor to every child it starts.
    listeners = listen_shared("127.0.0.1", 0)
    try:
        assert [sock.get_inheritable() for sock in listeners] == [False]
    finally:
        close(listeners)


def test_without_the_variable_a_process_binds_its_own() -> None:
    assert adopt({}) == []


def test_a_port_in_use_stops_the_parent_before_any_child_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StartupError, match="Address already in use"):
            listen_shared("127.0.0.1", port)


@pytest.mark.parametrize("key", ["ingest_processes", "status_processes"])
def test_processes_of_a_service_are_at_least_one(key: str) -> None:
    variable = f"SCANQ_{key.upper()}"
    assert getattr(Settings.from_env({variable: "3"}), key) == 3
    assert getattr(Settings(), key) == 1
    with pytest.raises(ConfigError, match=f"{variable}: must be at least 1"):
        Settings.from_env({variable: "0"})
