"""Listening sockets: bound here once, handed to several processes that serve the same port.

``bind`` turns a host that does not resolve or a port already taken into one
``StartupError`` naming the address. With ``--ingest-processes N`` or
``--status-processes N`` (``scanq ingest --processes N``, ``scanq status
--processes N``) the parent binds and listens once per service, then starts
that service's N children with its sockets inherited (``pass_fds``) and their
descriptor numbers in ``SCANQ_SUPERVISOR_LISTEN_FDS``; each child adopts them
(``adopt``) instead of binding. The kernel queues connections on the one
socket, whichever child accepts next takes the next connection (a busy child
accepts less), and a child that dies loses nothing but its own open
connections (a status child's event streams too: clients reconnect with
``Last-Event-ID``): the others keep accepting, and nothing is refused while it
restarts. Chosen over ``SO_REUSEPORT`` for that, and because a second
``scanq ingest`` started on the same port by mistake still fails with
"Address already in use".
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, MutableMapping
from typing import Any

from scanq.exceptions import StartupError

# Descriptor numbers of the inherited listening sockets (the SCANQ_SUPERVISOR_ prefix is not a setting).
LISTEN_FDS_ENV = "SCANQ_SUPERVISOR_LISTEN_FDS"
# uvicorn's default accept backlog: the parent listens before any child runs, so early connections queue.
LISTEN_BACKLOG = 2048


def bind(host: str, port: int) -> list[socket.socket]:
    """Bound (not yet listening) TCP sockets for every address ``host`` resolves to.

    They stay non-inheritable: a child process gets them only when started with them in ``pass_fds``
    (uvloop, which runs the supervisor, hands every inheritable descriptor to every child it starts).
    Raise ``StartupError`` naming the host or the address that failed.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise StartupError(f"cannot listen on {host}:{port}: the host does not resolve ({reason})") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise StartupError(f"cannot listen on {url(address, 'http')}: {exc.strerror or exc}") from None
    except BaseException:
        close(sockets)
        raise
    return sockets


def listen_shared(host: str, port: int) -> list[socket.socket]:
    """Sockets bound and listening on ``host``:``port``, to hand to child processes (``handoff_environ``).

    Raise ``StartupError`` as ``bind`` does.
    """
    sockets = bind(host, port)
    for sock in sockets:
        sock.listen(LISTEN_BACKLOG)
    return sockets


def handoff_environ(sockets: Iterable[socket.socket]) -> dict[str, str]:
    """The variable that tells a child which inherited descriptors are its listening sockets."""
    return {LISTEN_FDS_ENV: ",".join(str(sock.fileno()) for sock in sockets)}


def adopt(environ: MutableMapping[str, str] = os.environ) -> list[socket.socket]:
    """The listening sockets this process inherited from its parent (none: it binds its own).

    The variable is removed once read, so nothing this process starts takes the descriptors for its own.
    """
    numbers = environ.pop(LISTEN_FDS_ENV, "")
    return [socket.socket(fileno=int(number)) for number in numbers.split(",") if number.strip()]


def close(sockets: Iterable[socket.socket]) -> None:
    """Close every socket (the parent's copy: children keep theirs)."""
    for sock in sockets:
        sock.close()


def url(address: tuple[Any, ...], scheme: str) -> str:
    """``scheme://host:port`` of a socket address, with IPv6 hosts in brackets."""
    host, port = address[0], address[1]
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


__all__ = ["LISTEN_FDS_ENV", "adopt", "bind", "close", "handoff_environ", "listen_shared", "url"]
