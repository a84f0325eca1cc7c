"""The tutorials (docs/tutorials/NN-slug.py), as the site build executed them in their short form
(RETROGRAD_DOCS_SHORT=1): each page has the outputs and figures of its code, and keeps the tutorial
contract: it says what the reader will see, ends with exercises, has a short form, and records the
wall time of its full-length run."""
from __future__ import annotations

import html
import re

import pytest

from docs_build import ROOT

TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("[0-9][0-9]-*.py"))


def _figures(page: str) -> int:
    return len(re.findall(r'<img[^>]+src="data:image/(?:png|jpeg|svg\+xml)[;,]', page)) + \
        len(re.findall(r'<div class="jp-RenderedSVG[^"]*"', page))


@pytest.mark.parametrize("source", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_the_tutorial_page_has_the_outputs_of_its_code(built_site, source):
    page = built_site.page(f"tutorials/{source.stem}")
    text = html.unescape(re.sub(r"<[^>]+>", " ", page))
    assert _figures(page) >= 1, f"{source.name}: no figure on its page"
    assert "jp-OutputArea-output" in page, f"{source.name}: no cell output on its page"
    assert "Traceback (most recent call last)" not in text, f"{source.name}: an exception on its page"
    key = f"tutorials/{source.name}"
    assert key in built_site.times, built_site.times  # the build executed it
    print(f"{source.name}: executed and rendered in {built_site.times[key]} s")


@pytest.mark.parametrize("source", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_the_tutorial_keeps_the_contract(source):
    code = source.read_text(encoding="utf-8")
    first_markdown = code.split("# %%", 2)[1] if "# %%" in code else ""
    assert re.search(r"what you will see", first_markdown, re.I), \
        f"{source.name}: its first markdown cell should say what the reader will see"
    assert re.search(r"^# #+ .*Exercises", code, re.M | re.I), f"{source.name}: no 'Exercises' heading"
    last_heading = re.findall(r"^# (#+ .*)$", code, re.M)[-1]
    assert "exercises" in last_heading.lower(), f"{source.name}: its last section should be the exercises"
    assert "RETROGRAD_DOCS_SHORT" in code, f"{source.name}: no short form (read RETROGRAD_DOCS_SHORT)"


@pytest.mark.parametrize("source", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_the_tutorial_records_its_full_length_wall_time(source):
    code = source.read_text(encoding="utf-8")
    assert re.search(r"full[- ]length.{0,200}?\d+(\.\d+)?\s*(s|min|minutes?|seconds?|h|hours?)\b", code, re.I | re.S), \
        f"{source.name}: record the full-length run's wall time in the page text"

