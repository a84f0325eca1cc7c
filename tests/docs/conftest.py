"""The documentation site, built once per test session (mkdocs.yml at the repository root, into a
temporary folder, ``--strict``, ``RETROGRAD_DOCS_SHORT=1``); tests/docs/test_*.py read it. A failed
build fails them all with the build's log."""
from __future__ import annotations

import json

import pytest

from docs_build import ROOT, BuiltSite, mkdocs_build


@pytest.fixture(scope="session")
def built_site(tmp_path_factory) -> BuiltSite:
    out = tmp_path_factory.mktemp("docs") / "site"
    p, seconds, times = mkdocs_build(ROOT / "mkdocs.yml", out, cwd=ROOT)
    log = p.stdout + p.stderr
    if p.returncode != 0:
        pytest.fail(f"mkdocs build --strict failed (exit {p.returncode}); its log:\n{log[-20000:]}", pytrace=False)
    print(f"\ndocs site built in {seconds:.0f} s; tutorials (s): {json.dumps(times)}")
    return BuiltSite(out, log, seconds, times)
