"""Run checkdmarc on the DNS lab's domains and print its verdicts as JSON.

Runs under ``.venv-checkdmarc/bin/python`` (``scripts/ensure-checkdmarc.sh``: checkdmarc 6 cannot
share the dev virtualenv with sslyze), never imported by the test process. Input on stdin:
``{"host": "127.0.0.1", "port": 5353, "domains": [...]}``; output on stdout: per domain, the
results of ``check_spf``, ``check_dmarc`` and ``check_dnssec`` asked of that name server only.
"""

from __future__ import annotations

import json
import sys

import checkdmarc.dmarc
import checkdmarc.dnssec
import checkdmarc.spf
import dns.nameserver

TIMEOUT_S = 3.0


def main() -> None:
    request = json.load(sys.stdin)
    nameservers = [dns.nameserver.Do53Nameserver(request["host"], int(request["port"]))]
    results = {}
    for domain in request["domains"]:
        results[domain] = {
            "spf": checkdmarc.spf.check_spf(domain, nameservers=nameservers, timeout=TIMEOUT_S),
            "dmarc": checkdmarc.dmarc.check_dmarc(domain, nameservers=nameservers, timeout=TIMEOUT_S),
            "dnssec": checkdmarc.dnssec.check_dnssec(domain, nameservers=nameservers, timeout=TIMEOUT_S),
        }
    json.dump(results, sys.stdout, default=str)


if __name__ == "__main__":
    main()
