"""mkdocs hooks of the retrograd site (mkdocs.yml: ``hooks: [docs/hooks/site.py]``).

- The navigation's "Tutorials" section is every ``docs/tutorials/NN-slug.py`` (NN = two digits), in
  number order, titled by its first markdown heading: a new tutorial appears on the site without an
  edit of mkdocs.yml, and two tutorials with one number fail the build.
- The "API reference" section is generated from the packages (api_pages.py), as is the command-line
  page (cli_reference.py, from ``retrograd.cli.build_parser()``).
- The engine page's graph pictures are drawn by ``rg.viz.draw_graph`` (engine_figures.py).
- Tutorial pages execute through mkdocs-jupyter; the time each took goes to the build log and, when
  ``RETROGRAD_DOCS_TIMES`` names a file, to that JSON file. Their formulas are typeset by a MathJax
  copied into the site (``assets/mathjax``), so the site needs no network.

The checkout's ``src/`` goes first on ``sys.path`` and ``PYTHONPATH`` (so the notebook kernels get it
too): the site documents and runs the code next to this mkdocs.yml, whatever else is installed.
"""
from __future__ import annotations

import json
import logging
import os
import pathlib
import re
import sys
import time

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

HOOKS = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HOOKS))

import api_pages  # noqa: E402
import cli_reference  # noqa: E402
import engine_figures  # noqa: E402

log = logging.getLogger("mkdocs.hooks.retrograd")

TUTORIAL = re.compile(r"^(\d\d)-[A-Za-z0-9_-]+\.py$")
TUTORIALS_INDEX = "tutorials/index.md"
API_INDEX = "api/index.md"
CLI_PAGE = "reference/cli.md"
ENGINE_PAGE = "contributing/engine.md"

_state: dict = {}


def tutorials(docs_dir: pathlib.Path) -> list[tuple[str, str]]:
    """(path relative to docs_dir, title) of every tutorial, in number order; two with one number
    raise PluginError."""
    found: dict[str, pathlib.Path] = {}
    for path in sorted((docs_dir / "tutorials").glob("*.py")):
        m = TUTORIAL.match(path.name)
        if not m:
            continue
        if m.group(1) in found:
            raise PluginError(f"docs/tutorials: {found[m.group(1)].name} and {path.name} share the number "
                              f"{m.group(1)}; give each tutorial its own NN")
        found[m.group(1)] = path
    out = []
    for number, path in sorted(found.items()):
        title = None
        for line in path.read_text(encoding="utf-8").splitlines():
            h = re.match(r"^# #\s+(.+?)\s*$", line)
            if h:
                title = h.group(1)
                break
        if title is None:
            raise PluginError(f"docs/tutorials/{path.name}: no markdown heading ('# # Title' in a "
                              "'# %% [markdown]' cell) to title its page with")
        out.append((f"tutorials/{path.name}", title))
    return out


def _tutorials_index(items: list[tuple[str, str]]) -> str:
    lines = ["# Tutorials", "",
             "Each tutorial is a Python file in `docs/tutorials/` (jupytext percent format), executed when "
             "the site is built: every number and figure on its page comes from the code above it. Run one "
             "yourself with `python docs/tutorials/NN-name.py`, or open it as a notebook with jupytext. "
             "The site's CI build sets `RETROGRAD_DOCS_SHORT=1`, which makes each tutorial short (fewer "
             "epochs, smaller data); each page says how long its full-length run took.", ""]
    if not items:
        lines.append("No tutorial has been written yet.")
    lines += [f"1. [{title}]({path[len('tutorials/'):]})" for path, title in items]
    return "\n".join(lines) + "\n"


def _nav_pages(nav) -> set[str]:
    out = set()
    for item in nav or []:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        out |= _nav_pages(value) if isinstance(value, list) else {value}
    return out


def _replace(nav, target: str, section: list):
    """The nav with the entry whose page is ``target`` replaced by ``section`` (a list)."""
    out = []
    for item in nav:
        if isinstance(item, dict):
            (title, value), = item.items()
            if value == target:
                out.append({title: section})
                continue
            if isinstance(value, list):
                out.append({title: _replace(value, target, section)})
                continue
        out.append(item)
    return out


def on_config(config):
    root = pathlib.Path(config.config_file_path).resolve().parent
    src = str(root / "src")
    sys.path.insert(0, src)
    os.environ["PYTHONPATH"] = os.pathsep.join([src] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                                        if p and p != src])
    # figures inline in the page, whatever MPLBACKEND the shell has (Agg would drop them)
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    docs_dir = pathlib.Path(config.docs_dir)
    tut = tutorials(docs_dir)
    wanted = _nav_pages(config.nav)
    pages = api_pages.pages(log=log.info) if API_INDEX in wanted else []
    _state.update(tutorials=tut, api=pages, times={}, wanted=wanted)
    tut_nav = [TUTORIALS_INDEX] + [{title: path} for path, title in tut]
    groups: dict[str, list] = {}
    for p in pages:
        groups.setdefault(p.group, []).append({p.title: p.path})
    api_nav = [API_INDEX] + [{g: items} for g, items in groups.items()]
    nav = _replace(config.nav, TUTORIALS_INDEX, tut_nav)
    config.nav = _replace(nav, API_INDEX, api_nav)
    return config


def on_files(files, config):
    def add(path: str, content: str | bytes):
        if files.get_file_from_path(path) is not None:
            raise PluginError(f"docs/{path} exists, but the site generates that page; remove the file")
        files.append(File.generated(config, path, content=content))

    wanted = _state["wanted"]  # a site whose nav lacks a generated page (a test's) skips its work
    if TUTORIALS_INDEX in wanted:
        add(TUTORIALS_INDEX, _tutorials_index(_state["tutorials"]))
    if CLI_PAGE in wanted:
        add(CLI_PAGE, cli_reference.reference())
    if API_INDEX in wanted:
        add(API_INDEX, api_pages.index(_state["api"]))
        for p in _state["api"]:
            add(p.path, p.content)
    if ENGINE_PAGE in wanted:
        for name, svg in engine_figures.figures(log=log.info).items():
            add(f"contributing/img/{name}.svg", svg)
    return files


def _copy_mathjax(dest: pathlib.Path) -> None:
    """MathJax 2.7 (from the jupyter-server-mathjax package) into the site, for the notebook pages'
    formulas (mkdocs.yml: custom_mathjax_url), without its translations of MathJax's own messages."""
    import shutil
    try:
        import jupyter_server_mathjax
    except ImportError:
        raise PluginError("the tutorials' formulas need MathJax: pip install jupyter-server-mathjax "
                          "(it is in retrograd's docs and test extras)") from None
    src = pathlib.Path(jupyter_server_mathjax.__file__).parent / "static"
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("localization"), dirs_exist_ok=True)
    # the package ships the STIX-Web fonts only: without this (config=...,local/retrograd in mkdocs.yml)
    # MathJax looks for its TeX fonts and some formulas end as "[Math Processing Error]"
    (dest / "config" / "local").mkdir(parents=True, exist_ok=True)
    (dest / "config" / "local" / "retrograd.js").write_text(
        'MathJax.Hub.Config({"HTML-CSS": {availableFonts: ["STIX-Web"], preferredFont: "STIX-Web", '
        'webFont: "STIX-Web", imageFont: null}});\n'
        'MathJax.Ajax.loadComplete("[MathJax]/config/local/retrograd.js");\n')


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri.startswith("tutorials/") and page.file.src_uri.endswith(".py"):
        _state["times"][page.file.src_uri] = time.perf_counter()
    return markdown


def on_page_content(html, page, config, files):
    started = _state["times"].get(page.file.src_uri)
    if isinstance(started, float):
        seconds = time.perf_counter() - started
        _state["times"][page.file.src_uri] = round(seconds, 1)
        log.info(f"{page.file.src_uri}: executed and rendered in {seconds:.1f} s")
    return html


def on_post_build(config):
    if TUTORIALS_INDEX in _state["wanted"]:
        _copy_mathjax(pathlib.Path(config.site_dir) / "assets" / "mathjax")
    out = os.environ.get("RETROGRAD_DOCS_TIMES")
    if out:
        pathlib.Path(out).write_text(json.dumps(_state.get("times", {}), indent=1) + "\n")
