"""Keep Python's cyclic garbage collector off the hot paths of long-running processes.

A service or worker process imports tens of thousands of objects at start-up
(modules, classes, functions, settings) that live until it exits. The cyclic
collector's full passes traverse every one of them: in a status process under
64 concurrent clients they took 60 to 160 ms each, several times a minute, and
every request in flight waited for them (benchmarks.md, round 2 session 6).
Freezing moves what exists now into a generation no pass visits; what is made
later is collected as before. A higher first threshold makes the young passes
rarer. Reference counting frees everything outside a cycle at once either way:
only cycles wait a little longer.
"""

from __future__ import annotations

import gc

# Allocations (less deallocations) between two young passes; Python's default is 700.
YOUNG_THRESHOLD = 10_000


def calm_collector(young_threshold: int = YOUNG_THRESHOLD) -> None:
    """Freeze every object alive now out of the collector's passes, and make its young passes rarer.

    Call it once start-up is done (imports, settings, the app built), just before serving.
    """
    gc.freeze()
    _, *older = gc.get_threshold()
    gc.set_threshold(young_threshold, *older)


__all__ = ["YOUNG_THRESHOLD", "calm_collector"]
