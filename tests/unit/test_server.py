"""Binding before serving: a port in use or a host that does not resolve is one ``StartupError`` naming it."""

from __future__ import annotations

import logging
import re
import resource
import socket
from typing import Any

import pytest

from scanq.api.server import RESERVED_FDS, bind, connection_limit
from scanq.exceptions import StartupError


def test_a_port_in_use_is_a_startup_error_naming_the_address() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        with pytest.raises(StartupError, match=rf"cannot listen on http://127\.0\.0\.1:{port}: Address already in use"):
            bind("127.0.0.1", port)


def test_a_host_that_does_not_resolve_is_a_startup_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def getaddrinfo(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    with pytest.raises(StartupError, match=re.escape("cannot listen on nowhere.example:1: the host does not resolve")):
        bind("nowhere.example", 1)


def test_a_free_port_is_bound_on_every_address() -> None:
    sockets = bind("127.0.0.1", 0)
    try:
        assert [sock.getsockname()[0] for sock in sockets] == ["127.0.0.1"]
    finally:
        for sock in sockets:
            sock.close()


def test_the_connection_cap_stays_under_the_open_file_limit(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1024, resource.RLIM_INFINITY))

    assert connection_limit(500) == 500
    with caplog.at_level(logging.WARNING):
        assert connection_limit(5000) == 1024 - RESERVED_FDS
    assert "raise `ulimit -n`" in caplog.text
