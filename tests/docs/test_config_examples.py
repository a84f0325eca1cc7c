"""The config reference's examples (retrograd.train.config_docs, rendered into docs/config.md and the
site's config page): every fixed key has one, and each is a value the config check accepts."""
from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from retrograd.train import config, config_docs


def test_every_fixed_key_has_an_example_the_schema_accepts():
    for section, keys in config.SCHEMA.items():
        for key, spec in keys.items():
            ex = config_docs.example(section, key)
            assert ex.startswith(f"{key} = "), f"{section}.{key}: give it an example in config_docs.EXAMPLES"
            value = tomllib.loads(ex)[key]
            checked = config._fixed_section({section: {key: value}}, section)[key]
            assert checked == value, (section, key, value, checked)


def test_a_bad_example_would_be_caught():
    import pytest
    with pytest.raises(config.ConfigError, match="train.epochs"):
        config._fixed_section({"train": {"epochs": 0}}, "train")


def test_the_section_examples_validate():
    base = {"model": {"name": "mlp", "sizes": [784, 10]}, "data": {"name": "fashion_mnist"}}
    for section, text in config_docs.SECTION_EXAMPLES.items():
        cfg = {**base, **tomllib.loads(text)}
        out = config.validate(cfg, data_files=False)
        assert out[section]["name"] == tomllib.loads(text)[section]["name"], section
    assert "```toml\n[optim]\nname = \"adamw\"" in config_docs.reference()
