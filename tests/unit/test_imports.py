"""What importing a module drags in: a worker process never loads the HTTP stack."""

from __future__ import annotations

import json
import subprocess
import sys

LOADED_MODULES = "import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"


def modules_loaded_by(module: str) -> list[str]:
    """The ``sys.modules`` of a fresh interpreter after ``import module`` (this process has imported everything)."""
    answer = subprocess.run(
        [sys.executable, "-c", LOADED_MODULES.format(module=module)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    loaded: list[str] = json.loads(answer.stdout)
    return loaded


def test_importing_the_worker_does_not_import_starlette() -> None:
    loaded = modules_loaded_by("scanq.worker")
    assert "scanq.worker" in loaded
    assert [name for name in loaded if name == "starlette" or name.startswith("starlette.")] == []
    assert [name for name in loaded if name.split(".")[0] in ("uvicorn", "httptools")] == []
