"""What a supervisor runs: the children of ``scanq up`` (or of one service's ``--processes N``) and what each gets.

An HTTP service (``Service``: ingest, status) runs as one child that binds
its own port, or, with ``--ingest-processes N`` / ``--status-processes N``
(N > 1), as N children named ``ingest-1`` … that serve one socket the
supervisor bound for them (``Child.listeners``). Every child gets every
setting as its ``SCANQ_*`` variable, plus what is its own: a service's
children ``SCANQ_<SERVICE>_PROCESSES=1`` (only a supervisor starts several),
worker *N* its own metrics port.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from scanq.config import ENV_PREFIX, Settings, unknown_env_names


@dataclass(frozen=True, slots=True)
class Service:
    """An HTTP service that runs in one process or in several on one port.

    Args:
        name: its command (``scanq ingest``) and the name its children are shown under; its settings are
            ``<name>_port`` and ``<name>_processes``.
    """

    name: str

    @property
    def processes_key(self) -> str:
        """The setting that says how many processes serve it: ``ingest_processes``."""
        return f"{self.name}_processes"

    def processes(self, settings: Settings) -> int:
        count: int = getattr(settings, self.processes_key)
        return count

    def port(self, settings: Settings) -> int:
        port: int = getattr(settings, f"{self.name}_port")
        return port


INGEST = Service("ingest")
STATUS = Service("status")
SERVICES = (INGEST, STATUS)


@dataclass(eq=False)
class Child:
    """One supervised process: ``python -m scanq COMMAND`` with extra environment.

    Args:
        name: shown in front of each of its lines (``ingest-2``, ``worker-1``).
        command: the ``scanq`` command it runs.
        env: its own variables, over the settings every child gets.
        listeners: the service whose socket, bound by the supervisor, it serves (None: it binds its own, if any).
    """

    name: str
    command: str
    env: dict[str, str] = field(default_factory=dict)
    listeners: Service | None = None
    process: asyncio.subprocess.Process | None = None
    last_line: bytes = b""  # its latest line of output: the reason, when it could not start


def plan_children(settings: Settings, *, only: Service | None = None) -> list[Child]:
    """The children to run: ``only`` that service's processes, else every service's and ``settings.workers``."""
    if only is not None:
        return service_children(settings, only)
    children = [child for service in SERVICES for child in service_children(settings, service)]
    workers = range(1, settings.workers + 1)
    return children + [Child(name=f"worker-{n}", command="worker", env=worker_env(settings, n)) for n in workers]


def service_children(settings: Settings, service: Service) -> list[Child]:
    """One child that binds its own port, or ``<name>_processes`` children that share one socket."""
    # Each child serves alone (SCANQ_<SERVICE>_PROCESSES=1 in its environment): only a supervisor starts several.
    env = {f"{ENV_PREFIX}{service.processes_key.upper()}": "1"}
    if (count := service.processes(settings)) == 1:
        return [Child(name=service.name, command=service.name, env=env)]
    return [
        Child(name=f"{service.name}-{n}", command=service.name, env=env, listeners=service) for n in range(1, count + 1)
    ]


def worker_env(settings: Settings, number: int) -> dict[str, str]:
    """Worker ``number``'s own variables: workers on one machine cannot share a metrics port (base + N - 1)."""
    if not settings.metrics_port:
        return {}
    return {f"{ENV_PREFIX}METRICS_PORT": str(settings.metrics_port + number - 1)}


def settings_environ(settings: Settings) -> dict[str, str]:
    """Every setting as the ``SCANQ_*`` variable that reproduces it in a child process."""
    return settings.to_environ()


def inherited_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """The supervisor's environment as its children get it: without the ``SCANQ_*`` names that are no setting.

    The supervisor has warned about those once; each child would warn again.
    """
    unknown = set(unknown_env_names(environ))
    return {name: value for name, value in environ.items() if name not in unknown}


__all__ = [
    "INGEST",
    "SERVICES",
    "STATUS",
    "Child",
    "Service",
    "inherited_environ",
    "plan_children",
    "service_children",
    "settings_environ",
    "worker_env",
]
