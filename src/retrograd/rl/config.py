"""Reinforcement-learning configs for ``retrograd rl``: read TOML, apply ``--set`` overrides, check
every key with a message that names it, fill in defaults, and write the resolved config back.

An RL config has three sections::

    [rl]                      # fixed keys (RL_SCHEMA): what to train, how long, seeds, logging
    algorithm = "ppo"         # one of rg.rl.ALGORITHMS
    env = "CartPole-v1"       # a gymnasium environment id
    total_steps = 150_000     # environment steps (summed over the vectorised environments)

    [algorithm]               # the algorithm's hyperparameters: its class's HYPERPARAMETERS
    learning_rate = 2.5e-4

    [run]                     # where the run folder goes (the same keys as retrograd train's)
    dir = "runs"

``[algorithm]`` keys are checked against the class's ``HYPERPARAMETERS`` (name -> default): an
unknown key is refused with the known ones, a value of the wrong type with the type its default
has; values the algorithm refuses (a negative ``gamma``) are refused when it is built, before
the run folder is made (``build_algorithm``). ``rl.num_envs`` and ``rl.normalize_obs`` are the
algorithm's hyperparameters of those names, accepted in ``[rl]`` for convenience.
The resolved config (every hyperparameter written out) is ``config.toml`` of the run folder, so
``rl resume``, ``rl evaluate`` and ``rl play`` rebuild the same algorithm.

The reference of these keys (``reference()``) is generated from the same tables::

    python -m retrograd.rl.config > docs/rl_config.md
"""
from __future__ import annotations

import difflib
import pathlib
import re
from typing import Any

from ..io.toml_writer import toml_dumps
from ..train.config import SCHEMA as TRAIN_SCHEMA
from ..train.config import ConfigError, Key, _check, _describe, _fixed_section, _table, load_config, run_section
from ..train.config import apply_overrides as train_overrides
from ..train.config_ranges import NON_NEGATIVE, POSITIVE, Range

__all__ = ["RL_SECTIONS", "RL_SCHEMA", "ENV_HYPER", "is_rl_config", "algorithm_class", "validate", "apply_overrides",
           "dumps", "load_config", "build_algorithm", "reference", "REGENERATE", "ConfigError"]

RL_SECTIONS = ("rl", "algorithm", "run")
REGENERATE = "python -m retrograd.rl.config > docs/rl_config.md"
# [rl] keys that are the algorithm's hyperparameters of the same name (for the algorithms that have them)
ENV_HYPER = ("num_envs", "normalize_obs")

RL_SCHEMA: dict[str, dict[str, Key]] = {
    "rl": {
        "algorithm": Key("str", None, doc="the algorithm: one of rg.rl.ALGORITHMS (reinforce, a2c, ppo, dqn)"),
        "env": Key("str", None, doc="a gymnasium environment id, e.g. CartPole-v1, Acrobot-v1, Pendulum-v1"),
        "total_steps": Key("int", 100_000, range=POSITIVE,
                           doc="environment steps to train for, summed over the vectorised environments (the run "
                               "stops at the first iteration that reaches it); also the algorithm's "
                               "total_timesteps (the budget its schedules stretch over) unless [algorithm] sets it"),
        "seed": Key("int", 0, range=Range(0, 2**32 - 1),
                    doc="seeds the environments, the initialisation and the sampling: the same seed gives the same "
                        "run, bitwise"),
        "num_envs": Key("int", None, optional=True, range=POSITIVE,
                        doc="environments stepped together (the algorithm's num_envs hyperparameter; default: its own)"),
        "normalize_obs": Key("bool", None, optional=True,
                             doc="normalise observations by running mean and variance (the algorithm's normalize_obs "
                                 "hyperparameter; default: its own)"),
        "eval_episodes": Key("int", 100, range=NON_NEGATIVE,
                             doc="episodes of the deterministic policy evaluated at the end of training (summary.json, "
                                 "retrograd tune's objective); 0: none"),
        "eval_seed": Key("int", 10_000, range=Range(0, 2**32 - 1),
                         doc="seed of the evaluation environments (episode i is reset with eval_seed + i)"),
        "checkpoint_every": Key("int", 10, range=POSITIVE,
                                doc="save checkpoints/last every N iterations (and at the end); resume continues "
                                    "from it bitwise"),
        "window": Key("int", 20, range=POSITIVE,
                      doc="episodes the progress bar, the log and the plot average the return over (mean and "
                          "min-max of the last N finished episodes)"),
        "progress": Key("bool", True, doc="progress bar (on a terminal; plain lines otherwise)"),
        "threads": Key("int", 1, optional=True, range=POSITIVE,
                       doc="threads for BLAS and retrograd's kernels during the run (rg.set_num_threads); the small "
                           "networks of classic control run fastest on 1; unset: the machine's default"),
    },
    "run": TRAIN_SCHEMA["run"],
}

_TYPES = {bool: "bool", int: "int", float: "float", str: "str"}


def is_rl_config(raw: Any) -> bool:
    """Whether a loaded TOML table is an RL config (it has an ``[rl]`` section)."""
    return isinstance(raw, dict) and "rl" in raw


def _algorithms() -> dict:
    from . import ALGORITHMS  # the package facade (rlalgo's algorithms); imported when a config is checked
    return ALGORITHMS


def algorithm_class(name: Any) -> type:
    """The class of ``rl.algorithm`` (case-insensitive)."""
    algos = _algorithms()
    name = _check("rl.algorithm", name, "str")
    if name.lower() not in algos:
        raise ConfigError(f"rl.algorithm: {name!r} is not one of: {', '.join(algos)}")
    return algos[name.lower()]


def _hyper_type(default: Any) -> str:
    if isinstance(default, (list, tuple)):
        inner = {_TYPES.get(type(v)) for v in default}
        return "list[int]" if inner == {"int"} else "list[number]" if inner <= {"int", "float"} and inner else "list"
    return "number" if isinstance(default, float) else _TYPES.get(type(default), "any")


def _hyper_value(where: str, value: Any, default: Any, allowed: Any = None) -> Any:
    """``value`` checked against the type of the hyperparameter's ``default`` (a float takes an int;
    a default of None takes any value) and, for a string, against the ``allowed`` values."""
    if default is None:
        return None if isinstance(value, str) and value.lower() == "none" else value
    typ = _hyper_type(default)
    if typ == "number":  # a float hyperparameter: 3 is 3.0
        return float(_check(where, value, "float"))
    if typ.startswith("list"):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list like {default!r}, got {_describe(value)}")
        return [_hyper_value(f"{where}[{i}]", v, default[0]) if default else v for i, v in enumerate(value)]
    return _check(where, value, typ, allowed=allowed)


def _check_env(env_id: str) -> None:
    try:
        from gymnasium.envs.registration import registry
    except ImportError:
        raise ImportError("retrograd rl needs gymnasium: pip install 'retrograd[rl]'") from None
    if env_id not in registry:
        lower = {k.lower(): k for k in registry}
        close = sorted(lower[k] for k in difflib.get_close_matches(env_id.lower(), list(lower), n=3, cutoff=0.8))
        hint = f"; did you mean {', '.join(close)}?" if close else \
            "; e.g. CartPole-v1, Acrobot-v1, MountainCar-v0, Pendulum-v1, LunarLander-v3"
        raise ConfigError(f"rl.env: {env_id!r} is not a registered gymnasium environment id{hint}")


def validate(cfg: Any, *, config_path: str | pathlib.Path | None = None) -> dict:
    """The RL config with every key checked and every default filled in (``[algorithm]`` gets every
    hyperparameter of the algorithm's class)."""
    if not isinstance(cfg, dict):
        raise ConfigError("config: expected a table")
    for s in cfg:
        if s not in RL_SECTIONS:
            hint = " (an RL config; [model], [data], [optim] and [train] belong to retrograd train's configs)" \
                if s in ("model", "data", "optim", "schedule", "train") else ""
            raise ConfigError(f"config: unknown section [{s}]; known sections: {', '.join(RL_SECTIONS)}{hint}")
    rl = _fixed_section(cfg, "rl", RL_SCHEMA)
    cls = algorithm_class(rl["algorithm"])
    rl["algorithm"] = rl["algorithm"].lower()
    _check_env(rl["env"])
    params: dict = dict(cls.HYPERPARAMETERS)
    given = _table(cfg, "algorithm")
    for k, v in given.items():
        if k not in params:
            raise ConfigError(f"algorithm.{k}: unknown key for {rl['algorithm']}; known keys: {', '.join(params)}")
    choices = getattr(cls, "CHOICES", {})
    hyper = {k: _hyper_value(f"algorithm.{k}", given[k], d, choices.get(k)) if k in given else d
             for k, d in params.items()}
    if "total_timesteps" in params and "total_timesteps" not in given:  # the budget schedules stretch over
        hyper["total_timesteps"] = rl["total_steps"]
    for k in ENV_HYPER:
        if rl[k] is None:
            continue
        if k not in params:
            raise ConfigError(f"rl.{k}: {rl['algorithm']} has no {k} hyperparameter (its keys: {', '.join(params)}); "
                              "leave it out")
        if k in given and given[k] != rl[k]:
            raise ConfigError(f"rl.{k}: set twice, {rl[k]!r} here and {given[k]!r} as algorithm.{k}; keep one")
        hyper[k] = _hyper_value(f"rl.{k}", rl[k], params[k])
    for k in ENV_HYPER:  # written once, in [algorithm]
        rl.pop(k)
    return {"rl": rl, "algorithm": hyper, "run": run_section(cfg, config_path)}


def apply_overrides(cfg: dict, overrides: list[str]) -> dict:
    """``--set rl.total_steps=5000``, ``--set algorithm.learning_rate=1e-3`` on a loaded config."""
    return train_overrides(cfg, overrides, RL_SECTIONS)


def dumps(cfg: dict) -> str:
    """TOML text of a validated RL config (keys whose value is None are left out: None is the default)."""
    return toml_dumps({s: cfg[s] for s in RL_SECTIONS if s in cfg})


def build_algorithm(cfg: dict):
    """The algorithm of a validated config, made by ``rg.rl.make_algorithm``; a value it refuses
    becomes a ``ConfigError`` naming the key (``algorithm.gamma: ...``)."""
    from . import make_algorithm

    rl, hyper = cfg["rl"], cfg["algorithm"]
    try:
        return make_algorithm(rl["algorithm"], rl["env"], seed=rl["seed"], **hyper)
    except ValueError as e:
        raise ConfigError(_name_key(str(e), rl, hyper)) from None


def _name_key(text: str, rl: dict, hyper: dict) -> str:
    """An algorithm's ValueError as a config error naming the key: ``algorithm.gamma: ...``, ``rl.env: ...``."""
    text = text[len(rl["algorithm"]) + 2:] if text.startswith(f"{rl['algorithm']}: ") else text
    m = re.search(r"hyperparameter '?(\w+)'?", text)
    if m and m.group(1) in hyper:
        return f"algorithm.{m.group(1)}: {text}"
    if text.startswith("env_id") or "action space" in text:
        return f"rl.env: {text[len('env_id: '):] if text.startswith('env_id: ') else text}"
    if text.startswith("seed"):
        return f"rl.seed: {text}"
    return f"algorithm ({rl['algorithm']}): {text}"


# ---------------------------------------------------------------------- the reference
def _value(v: Any) -> str:
    from ..io.toml_writer import _toml_value
    try:
        return f"`{_toml_value(list(v) if isinstance(v, tuple) else v, 'default')}`"
    except TypeError:
        return f"`{v!r}`"


def reference() -> str:
    """The text of ``docs/rl_config.md``: the fixed keys and each algorithm's hyperparameters."""
    lines = ["<!-- generated by: " + REGENERATE + " (do not edit by hand) -->", "", "# RL config reference", "",
             "An RL config (`retrograd rl CONFIG`, `retrograd tune`) is a TOML file with the sections `[rl]`, "
             "`[algorithm]` and `[run]`. Every key is checked before anything is trained; a mistake names the key. "
             "`--set section.key=value` overrides a key. The run folder's `config.toml` is the resolved config, "
             "with every hyperparameter written out.", ""]
    for section, intro in (("rl", "What to train and for how long. The keys are fixed:"),
                           ("run", "Where the run folder goes (as for `retrograd train`):")):
        lines += [f"## [{section}]", "", intro, "", "| key | type | default | allowed | meaning |",
                  "|---|---|---|---|---|"]
        for k, spec in RL_SCHEMA[section].items():
            default = ("required" if not spec.optional else "unset") if spec.default is None else _value(spec.default)
            allowed = "; ".join(x for x in (str(spec.range) if spec.range else "",
                                            "or unset" if spec.optional else "") if x)
            lines.append(f"| `{k}` | {spec.type} | {default} | {allowed} | {spec.doc} |")
        lines.append("")
    lines += ["## [algorithm]", "", "The hyperparameters of `rl.algorithm`'s class (`HYPERPARAMETERS`), each "
              "optional; a float takes an int. The algorithm itself refuses values out of range (`gamma` outside "
              "[0, 1], a continuous action space for `dqn`), naming the key. `help(rg.rl.PPO)` (or the other "
              "classes) says what each one does.", "", "| `algorithm` | class | hyperparameters (default) |",
              "|---|---|---|"]
    for name, cls in _algorithms().items():
        args = ", ".join(f"`{k}` ({_value(v) if v is not None else 'unset'})" for k, v in cls.HYPERPARAMETERS.items())
        lines.append(f"| `{name}` | `rg.rl.{cls.__name__}` | {args} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(reference(), end="")
