"""Schemathesis against real ``scanq ingest`` and ``scanq status`` processes: the server does what its OpenAPI says.

``st run --checks all`` over each service's own ``/openapi.json``, every phase
(coverage, fuzzing, stateful), a bounded number of examples and a fixed seed so
a run is repeatable; ``SCANQ_TEST_SCHEMATHESIS_EXAMPLES`` and
``SCANQ_TEST_SCHEMATHESIS_SEED`` widen or vary it. The scanners resolve targets
at submit time, so the services ask a stub DNS server on loopback that answers
NXDOMAIN at once: no query leaves the machine and none waits for a timeout.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnslib import RCODE, DNSRecord

from tests.acceptance.conftest import Spawn, free_port, wait_http_ready

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = os.environ.get("SCANQ_TEST_SCHEMATHESIS_EXAMPLES", "25")
SEED = os.environ.get("SCANQ_TEST_SCHEMATHESIS_SEED", "11")
RUN_TIMEOUT_S = 240.0


@pytest.fixture(scope="module")
def nxdomain_server() -> Iterator[str]:
    """A UDP DNS server on loopback answering NXDOMAIN to every query; its ``ip:port``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, client = sock.recvfrom(4096)
                reply = DNSRecord.parse(data).reply()
            except Exception:  # a timeout (to look at `stop` again), or a datagram that is no DNS query
                continue
            reply.header.rcode = RCODE.NXDOMAIN
            sock.sendto(reply.pack(), client)

    thread = threading.Thread(target=serve, name="nxdomain", daemon=True)
    thread.start()
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join()
    sock.close()


@pytest.fixture(scope="module")
def service_urls(
    spawn_for_module: Spawn, tmp_path_factory: pytest.TempPathFactory, nxdomain_server: str
) -> dict[str, str]:
    ingest_port, status_port = free_port(), free_port()
    urls = {"ingest": f"http://127.0.0.1:{ingest_port}", "status": f"http://127.0.0.1:{status_port}"}
    env = {
        "SCANQ_DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('schemathesis') / 'scanq.db'}",
        "SCANQ_INGEST_PORT": str(ingest_port),
        "SCANQ_STATUS_PORT": str(status_port),
        "SCANQ_INGEST_URL": urls["ingest"],
        "SCANQ_STATUS_URL": urls["status"],
        "SCANQ_SCANNER_NAMESERVERS": nxdomain_server,
    }
    for name, url in urls.items():
        process = spawn_for_module(name, env=env)
        wait_http_ready(f"{url}/healthz", process=process)
    return urls


@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
@pytest.mark.parametrize("service", ["ingest", "status"])
def test_the_service_conforms_to_its_openapi_document(
    service_urls: dict[str, str], service: str, tmp_path: Path
) -> None:
    st = Path(sys.executable).with_name("st")
    command = [
        str(st),
        "--config-file",
        str(CONFIG),
        "run",
        f"{service_urls[service]}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        EXAMPLES,
        "--seed",
        SEED,
        "--generation-database",
        "none",
        "--no-color",
        "--request-timeout",
        "10",
    ]

    # In tmp_path: schemathesis leaves its cache directories in the working directory.
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)

    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-12000:]
    assert "No issues found" in output, output[-12000:]
