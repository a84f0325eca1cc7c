"""The documentation site (mkdocs.yml, docs/, docs/hooks/): it builds with --strict (the session
fixture in conftest.py), and its generated pages say what the code says: every command and flag of
the CLI, every key of the config schema, a page for every public name, the engine page's pictures."""
from __future__ import annotations

import html
import importlib
import pathlib
import re
import sys

import pytest

from docs_build import ROOT, mkdocs_build

sys.path.insert(0, str(ROOT / "docs" / "hooks"))
import api_pages  # noqa: E402
import cli_reference  # noqa: E402


def _text(page_html: str) -> str:
    """The article's text, tags dropped."""
    m = re.search(r"<article.*?</article>", page_html, re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", m.group(0) if m else page_html))


def test_the_build_is_strict_and_warning_free(built_site):
    # mkdocs' own warnings (strict mode already fails on them); a notebook kernel's log lines are not its
    assert not re.findall(r"^(?:WARNING|ERROR)\s+-", built_site.log, re.M), built_site.log
    assert (built_site.path / "index.html").is_file()
    assert (built_site.path / "search" / "search_index.json").is_file()


def test_the_cli_page_has_every_command_and_flag(built_site):
    from retrograd.cli import build_parser
    text = _text(built_site.page("reference/cli"))
    paths = cli_reference.commands(build_parser())
    assert {"train", "resume", "evaluate", "compare", "lr-find", "plot", "generate", "predict", "tune",
            "export"} <= set(paths)
    for path, parser in paths.items():
        assert f"retrograd {path}" in text, path
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in text, (path, flag)
            if action.help and not action.option_strings and action.dest != "help":
                assert " ".join(action.help.split())[:60] in text, (path, action.dest)


def test_the_cli_reference_renders_a_parser_it_was_never_shown():
    import argparse
    p = argparse.ArgumentParser(prog="retrograd")
    sub = p.add_subparsers(dest="command")
    rl = sub.add_parser("rl", help="reinforcement learning")
    rlsub = rl.add_subparsers(dest="rl_command")
    play = rlsub.add_parser("play", help="record a GIF")
    play.add_argument("run_dir", help="a run folder")
    play.add_argument("--episodes", type=int, default=3, help="how many | episodes")
    page = cli_reference.reference(p)
    assert "## `retrograd rl`" in page and "### `retrograd rl play`" in page
    assert "| `--episodes` `EPISODES` |  | `3` | how many \\| episodes |" in page
    assert "| `run_dir` |  |  | a run folder |" in page
    assert set(cli_reference.commands(p)) == {"rl", "rl play"}


def test_the_config_page_is_the_schema_reference(built_site):
    from retrograd.train import config
    text = _text(built_site.page("config"))
    for section, keys in config.SCHEMA.items():
        assert f"[{section}]" in text, section
        for k, spec in keys.items():
            assert re.search(rf"(?<![\w.]){re.escape(k)}\s+{re.escape(spec.type)}\s", text), f"{section}.{k}"


def test_every_public_name_has_an_api_page(built_site):
    pages = api_pages.pages(log=lambda _: None)
    for p in pages:
        assert (built_site.path / p.path[:-3] / "index.html").is_file(), p.path
    documented = "\n".join(_text(built_site.page(p.path[:-3])) for p in pages)
    for _, _, modules in api_pages.GROUPS:
        for mod_name in modules:
            try:
                module = importlib.import_module(mod_name)
            except ModuleNotFoundError:
                continue
            for name in api_pages._public(module):
                assert name in documented, f"{mod_name}.{name}"
    clip = _text(built_site.page("api/nn/utils-functions"))
    assert "clip_grad_norm_(parameters" in clip and "max_norm" in clip
    linear = _text(built_site.page("api/nn/Linear"))
    assert "retrograd.nn.Linear" in linear and "in_features" in linear
    tensor = _text(built_site.page("api/tensor/Tensor"))
    for method in ("backward(gradient", "matmul(", "view(", "register_hook("):
        assert method in tensor, method


def test_tutorials_index_and_nav_follow_the_files(built_site):
    files = sorted(p.name for p in (ROOT / "docs" / "tutorials").glob("[0-9][0-9]-*.py"))
    article = re.search(r"<article.*?</article>", built_site.page("tutorials"), re.S).group(0)
    links = re.findall(r'href="(\d\d-[^"/]+)/"', article)
    assert links == [f[:-3] for f in files]


def _load_hook():
    import importlib.util
    spec = importlib.util.spec_from_file_location("retrograd_site_hook", ROOT / "docs" / "hooks" / "site.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_two_tutorials_with_one_number_fail_the_build(tmp_path):
    from mkdocs.exceptions import PluginError
    hook = _load_hook()
    (tmp_path / "tutorials").mkdir()
    (tmp_path / "tutorials" / "03-a.py").write_text("# %% [markdown]\n# # A\n")
    (tmp_path / "tutorials" / "03-b.py").write_text("# %% [markdown]\n# # B\n")
    with pytest.raises(PluginError, match="03-a.py and 03-b.py share the number 03"):
        hook.tutorials(tmp_path)
    (tmp_path / "tutorials" / "03-b.py").rename(tmp_path / "tutorials" / "10-b.py")
    (tmp_path / "tutorials" / "helper.py").write_text("x = 1\n")
    assert hook.tutorials(tmp_path) == [("tutorials/03-a.py", "A"), ("tutorials/10-b.py", "B")]
    (tmp_path / "tutorials" / "04-untitled.py").write_text("print(1)\n")
    with pytest.raises(PluginError, match="04-untitled.py: no markdown heading"):
        hook.tutorials(tmp_path)


FIXTURE = ROOT / "tests" / "docs" / "fixtures" / "mini"


def test_a_new_tutorial_appears_and_runs_without_an_edit_of_the_config(tmp_path):
    """A small site with the real hook and plugin settings and one placeholder tutorial: the nav
    picks it up, its code runs at build time, and its printed number and figure are on the page."""
    docs = tmp_path / "docs"
    (docs / "tutorials").mkdir(parents=True)
    (docs / "index.md").write_text("# Mini\n")
    (docs / "tutorials" / "01-placeholder.py").write_text((FIXTURE / "01-placeholder.py").read_text())
    config = (FIXTURE / "mkdocs.yml").read_text().replace("HOOK", str(ROOT / "docs" / "hooks" / "site.py"))
    (tmp_path / "mkdocs.yml").write_text(config)
    p, _, times = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site", cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    page = (tmp_path / "site" / "tutorials" / "01-placeholder" / "index.html").read_text()
    assert "sum of squares 1..10 = 385" in page             # an output the code computed
    assert "short form: True" in page                       # RETROGRAD_DOCS_SHORT reached the kernel
    assert len(re.findall(r'<img[^>]+src="data:image/png;base64,', page)) == 1
    nav = (tmp_path / "site" / "index.html").read_text()
    assert 'href="tutorials/01-placeholder/"' in nav and "A placeholder" in nav
    assert set(times) == {"tutorials/01-placeholder.py"}


def test_a_failing_tutorial_fails_the_build(tmp_path):
    docs = tmp_path / "docs"
    (docs / "tutorials").mkdir(parents=True)
    (docs / "index.md").write_text("# Mini\n")
    (docs / "tutorials" / "01-broken.py").write_text("# %% [markdown]\n# # Broken\n\n# %%\n1 / 0\n")
    config = (FIXTURE / "mkdocs.yml").read_text().replace("HOOK", str(ROOT / "docs" / "hooks" / "site.py"))
    (tmp_path / "mkdocs.yml").write_text(config)
    p, _, _ = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site", cwd=tmp_path)
    assert p.returncode != 0
    assert "ZeroDivisionError" in p.stdout + p.stderr


def test_the_engine_page_shows_graph_pictures(built_site):
    page = built_site.page("contributing/engine")
    for name in ("mlp_forward", "mlp_backward", "gpt_collapsed"):
        assert f'src="../img/{name}.svg"' in page, name
        svg = (built_site.path / "contributing" / "img" / f"{name}.svg").read_text()
        if importlib.util.find_spec("retrograd.viz") is None:
            print(f"retrograd.viz is not in this checkout: {name}.svg is the placeholder")
            assert "which this build does not have yet" in svg
        else:
            assert 'class="graph"' in svg and "which this build does not have yet" not in svg
    # the code shown is the code that drew them (pymdownx.snippets from docs/hooks/engine_figures.py)
    text = _text(page)
    assert "after = draw_graph(loss, params=params, show_grads=True)" in text
    assert "collapse=True" in text
