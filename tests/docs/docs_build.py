"""Building the documentation site for tests/docs: ``mkdocs build --strict`` with ``RETROGRAD_DOCS_SHORT=1``
(each tutorial in its short form, as CI runs them)."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 1800


class BuiltSite:
    def __init__(self, path: pathlib.Path, log: str, seconds: float, times: dict):
        self.path = path          # the site folder
        self.log = log            # mkdocs' output
        self.seconds = seconds    # wall time of the whole build
        self.times = times        # tutorial source path -> seconds to execute and render it

    def page(self, url: str) -> str:
        """The HTML of a page by its URL path, e.g. "api/nn/Linear/"."""
        return (self.path / url / "index.html").read_text(encoding="utf-8")


def mkdocs_build(config: pathlib.Path, out: pathlib.Path, *, cwd: pathlib.Path, extra_env: dict | None = None
                 ) -> tuple[subprocess.CompletedProcess, float, dict]:
    times_file = out.parent / (out.name + "-times.json")
    env = {**os.environ, "RETROGRAD_DOCS_SHORT": "1", "RETROGRAD_DOCS_TIMES": str(times_file),
           "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           **(extra_env or {})}
    env.pop("RETROGRAD_DOCS_CACHE", None)
    start = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(out)],
                       cwd=cwd, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    seconds = time.perf_counter() - start
    times = json.loads(times_file.read_text()) if times_file.exists() else {}
    return p, seconds, times
