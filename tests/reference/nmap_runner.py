"""``nmap -sV`` as the reference for the ports scanner: one run per port, started early, read when needed."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass

NMAP_TIMEOUT_S = 240.0


@dataclass(frozen=True)
class NmapService:
    """What nmap reported for one port (``name`` is nmap's service name, ``tunnel`` "ssl" when inside TLS)."""

    state: str
    name: str | None = None
    product: str | None = None
    version: str | None = None
    tunnel: str | None = None
    method: str | None = None
    confidence: int = 0

    @property
    def is_identified(self) -> bool:
        """nmap matched a signature (not just its port table's guess, which has confidence 3)."""
        return self.method == "probed" and self.confidence >= 8


def nmap_path() -> str | None:
    return shutil.which("nmap")


class NmapRun:
    """``nmap -sV -Pn -n -p PORT HOST`` in the background (-Pn and -n: no host discovery, no reverse DNS)."""

    def __init__(self, nmap: str, host: str, port: int) -> None:
        self.port = port
        self.process = subprocess.Popen(
            [nmap, "-sV", "-Pn", "-n", "-p", str(port), host, "-oX", "-"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def result(self) -> NmapService:
        out, err = self.process.communicate(timeout=NMAP_TIMEOUT_S)
        if self.process.returncode != 0:
            raise RuntimeError(f"nmap failed ({self.process.returncode}): {err.decode(errors='replace')[-500:]}")
        return parse_xml(out, self.port)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


def parse_xml(document: bytes, port: int) -> NmapService:
    root = ElementTree.fromstring(document)
    for element in root.iter("port"):
        if element.get("portid") != str(port):
            continue
        state = element.find("state")
        service = element.find("service")
        if service is None:
            return NmapService(state=state.get("state", "") if state is not None else "")
        return NmapService(
            state=state.get("state", "") if state is not None else "",
            name=service.get("name"),
            product=service.get("product"),
            version=service.get("version"),
            tunnel=service.get("tunnel"),
            method=service.get("method"),
            confidence=int(service.get("conf", "0")),
        )
    raise AssertionError(f"nmap reported nothing for port {port}")
