"""Search spaces: parse the ``[search]`` table of a training config, suggest a trial's
values through an Optuna trial, and set them into a deep copy of the config.

A parameter is a dotted config key with a one-key distribution table::

    "optim.lr"         = {log_uniform = [1e-5, 1e-1]}
    "optim.weight_decay" = {uniform = [0.0, 0.1], step = 0.01}
    "model.depth"      = {int = [1, 6]}                  # optional step = 2, log = true
    "data.batch_size"  = {choice = [32, 64, 128, 256]}
    "optim.momentum"   = {uniform = [0.0, 0.99], when = {"optim.name" = "sgd"}, grid = [0.0, 0.9]}

``when`` makes a parameter conditional: it is suggested only in trials whose config
(after the parameters it depends on are set) has the given value (or one of a list of
values) at each key. ``grid`` lists the values a grid search takes for a continuous
parameter (``int`` and ``choice`` parameters, and ``uniform`` with ``step``, have a grid
of their own).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from typing import Any, Iterable, Mapping

__all__ = ["seed_key", "TuneError", "SearchSpaceError", "Param", "SearchSpace", "parse_space", "split_search_table", "set_dotted",
           "get_dotted", "SETTINGS", "DISTRIBUTIONS"]

DISTRIBUTIONS = ("log_uniform", "uniform", "int", "choice")
_OPTIONS = ("step", "log", "when", "grid")
# keys of a [search] table that configure the search instead of naming a parameter
SETTINGS = ("method", "n_trials", "timeout", "metric", "direction", "pruner", "seed", "study_name", "study_dir",
            "storage", "workers")
_MISSING = object()
_RAISE = object()


class TuneError(ValueError):
    """A search that cannot start: bad settings, a study that exists (or not) against ``resume``."""


class SearchSpaceError(TuneError):
    """A search parameter (named in the message) has a spec that cannot be searched."""


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _primitive(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


# ---------------------------------------------------------------------- dotted keys
def seed_key(config: Mapping) -> str:
    """The key that seeds a trial: ``rl.seed`` in an RL config (``retrograd rl``), else ``train.seed``."""
    return "rl.seed" if "rl" in config else "train.seed"


def get_dotted(cfg: Mapping, key: str, default: Any = _RAISE) -> Any:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            if default is _RAISE:
                raise KeyError(key)
            return default
        node = node[part]
    return node


def set_dotted(cfg: dict, key: str, value: Any) -> None:
    """``cfg["a"]["b"]["c"] = value`` for ``key = "a.b.c"``, making the tables on the way."""
    parts = key.split(".")
    node = cfg
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        elif not isinstance(nxt, dict):
            raise SearchSpaceError(f"search.{key}: cannot set it, {'.'.join(parts[:i + 1])} is "
                                   f"{nxt!r}, not a table")
        node = nxt
    node[parts[-1]] = value


# ---------------------------------------------------------------------- one parameter
@dataclasses.dataclass(frozen=True)
class Param:
    """One searched parameter: ``kind`` is one of ``DISTRIBUTIONS``."""
    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple = ()
    when: tuple = ()               # ((dotted key, (allowed values...)), ...)
    grid: tuple | None = None      # explicit grid values

    @property
    def encoded(self) -> bool:
        """Choices that Optuna cannot store (lists, tables) are suggested as their JSON text."""
        return self.kind == "choice" and not all(_primitive(c) for c in self.choices)

    def encode(self, value: Any) -> Any:
        return json.dumps(value) if self.encoded else value

    def decode(self, value: Any) -> Any:
        return json.loads(value) if self.encoded else value

    def grid_values(self) -> list:
        """The values a grid search takes; raises for a continuous parameter without ``grid``/``step``."""
        if self.grid is not None:
            return list(self.grid)
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.kind == "uniform" and self.step is not None:
            n = int(math.floor((self.high - self.low) / self.step + 1e-9))
            return [round(self.low + i * self.step, 12) for i in range(n + 1)]
        raise SearchSpaceError(f"search.{self.name}: grid search needs a finite set of values, but {self.kind} "
                               f"[{self.low}, {self.high}] is continuous; add grid = [...] (the values to try)"
                               + (" or step = ..." if self.kind == "uniform" else ""))

    def suggest(self, trial: Any, *, grid: bool = False) -> Any:
        """The trial's value (decoded) for this parameter."""
        if grid:
            values = [self.encode(v) for v in self.grid_values()]
            return self.decode(trial.suggest_categorical(self.name, values))
        if self.kind == "log_uniform":
            return trial.suggest_float(self.name, self.low, self.high, log=True)
        if self.kind == "uniform":
            return trial.suggest_float(self.name, self.low, self.high, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return self.decode(trial.suggest_categorical(self.name, [self.encode(c) for c in self.choices]))

    def active(self, cfg: Mapping) -> bool:
        return all(get_dotted(cfg, k, _MISSING) in allowed for k, allowed in self.when)


def _flatten(table: Mapping, prefix: str = "") -> Iterable[tuple[str, Any]]:
    """Dotted names and specs: ``{"optim": {"lr": {...}}}`` and ``{"optim.lr": {...}}`` both give ``optim.lr``."""
    for k, v in table.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping) and v and not (set(v) & set(DISTRIBUTIONS + _OPTIONS)) \
                and all(isinstance(x, Mapping) for x in v.values()):
            yield from _flatten(v, name + ".")
        else:
            yield name, v


def _pair(name: str, kind: str, v: Any) -> tuple:
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise SearchSpaceError(f"search.{name}: {kind} takes [low, high] (two numbers), got {v!r}")
    low, high = v
    if not (_is_number(low) and _is_number(high)):
        raise SearchSpaceError(f"search.{name}: {kind} bounds must be numbers, got {v!r}")
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise SearchSpaceError(f"search.{name}: int bounds must be integers, got {v!r}")
    if not low < high:
        raise SearchSpaceError(f"search.{name}: {kind} needs low < high, got [{low}, {high}]")
    return low, high


def _parse_when(name: str, when: Any) -> tuple:
    if not isinstance(when, Mapping) or not when:
        raise SearchSpaceError(f"search.{name}: when takes a table of config keys and values, e.g. "
                               f'when = {{"optim.name" = "sgd"}}, got {when!r}')
    def flat(t: Mapping, prefix: str = ""):
        for k, v in t.items():
            yield from flat(v, f"{prefix}{k}.") if isinstance(v, Mapping) else [(f"{prefix}{k}", v)]

    out = []
    for key, v in flat(when):
        allowed = tuple(v) if isinstance(v, (list, tuple)) else (v,)
        if not allowed:
            raise SearchSpaceError(f"search.{name}: when.{key} lists no values")
        out.append((key, allowed))
    return tuple(out)


def parse_param(name: str, spec: Any) -> Param:
    """One ``Param`` from its spec table; errors name ``search.<name>``."""
    if not isinstance(spec, Mapping):
        raise SearchSpaceError(f"search.{name}: expected a table with one of {', '.join(DISTRIBUTIONS)} "
                               f"(e.g. {{log_uniform = [1e-5, 1e-1]}}), got {spec!r}")
    unknown = [k for k in spec if k not in DISTRIBUTIONS + _OPTIONS + ("values",)]
    if unknown:
        raise SearchSpaceError(f"search.{name}: unknown option {unknown[0]!r}; a parameter takes one distribution "
                               f"({', '.join(DISTRIBUTIONS)}) and the options {', '.join(_OPTIONS)}")
    kinds = [k for k in DISTRIBUTIONS if k in spec]
    if len(kinds) != 1:
        raise SearchSpaceError(f"search.{name}: expected exactly one distribution of {', '.join(DISTRIBUTIONS)}, "
                               f"got {', '.join(kinds) if kinds else 'none'}")
    kind = kinds[0]
    v = spec[kind]
    when = _parse_when(name, spec["when"]) if "when" in spec else ()
    grid = spec.get("grid", spec.get("values"))
    if "grid" in spec and "values" in spec:
        raise SearchSpaceError(f"search.{name}: give grid or values, not both")
    step, log = spec.get("step"), spec.get("log", False)
    if not isinstance(log, bool):
        raise SearchSpaceError(f"search.{name}: log must be true or false, got {log!r}")
    if kind == "choice":
        if not isinstance(v, (list, tuple)) or not v:
            raise SearchSpaceError(f"search.{name}: choice takes a non-empty list of values, got {v!r}")
        if step is not None or log:
            raise SearchSpaceError(f"search.{name}: step and log are for numeric ranges, not choice")
        texts = [json.dumps(c, sort_keys=True) for c in v]
        if len(set(texts)) != len(texts):
            raise SearchSpaceError(f"search.{name}: choice lists a value twice: {v!r}")
        if grid is not None:
            raise SearchSpaceError(f"search.{name}: a choice is its own grid; drop grid = ...")
        return Param(name, kind, choices=tuple(v), when=when)
    low, high = _pair(name, kind, v)
    if kind == "log_uniform":
        if low <= 0:
            raise SearchSpaceError(f"search.{name}: log_uniform needs positive bounds, got [{low}, {high}]")
        if step is not None or log:
            raise SearchSpaceError(f"search.{name}: log_uniform takes no step or log (it is log already)")
        low, high = float(low), float(high)
    elif kind == "uniform":
        if log:
            raise SearchSpaceError(f"search.{name}: uniform takes no log; use log_uniform = [low, high]")
        low, high = float(low), float(high)
    else:  # int
        low, high = int(low), int(high)
        if log and low <= 0:
            raise SearchSpaceError(f"search.{name}: int with log = true needs low >= 1, got [{low}, {high}]")
    if step is not None:
        if not _is_number(step) or step <= 0 or (kind == "int" and not float(step).is_integer()):
            raise SearchSpaceError(f"search.{name}: step must be a positive {'int' if kind == 'int' else 'number'}"
                                   f", got {step!r}")
        if step > high - low:
            raise SearchSpaceError(f"search.{name}: step {step} is larger than the range [{low}, {high}]")
        if kind == "int" and log and step != 1:
            raise SearchSpaceError(f"search.{name}: int with log = true takes no step")
    if grid is not None:
        if not isinstance(grid, (list, tuple)) or not grid or not all(_is_number(g) for g in grid):
            raise SearchSpaceError(f"search.{name}: grid takes a non-empty list of numbers, got {grid!r}")
        bad = [g for g in grid if not low <= g <= high]
        if bad:
            raise SearchSpaceError(f"search.{name}: grid value {bad[0]!r} is outside [{low}, {high}]")
        if len(set(grid)) != len(grid):
            raise SearchSpaceError(f"search.{name}: grid lists a value twice: {grid!r}")
        if kind == "int" and not all(float(g).is_integer() for g in grid):
            raise SearchSpaceError(f"search.{name}: grid values of an int parameter must be integers, got {grid!r}")
        grid = tuple(int(g) if kind == "int" else float(g) for g in grid)
    return Param(name, kind, low, high, step, log, when=when, grid=grid)


# ---------------------------------------------------------------------- the space
class SearchSpace:
    """Parameters in suggestion order (a conditional parameter after those its ``when`` names)."""

    def __init__(self, params: Iterable[Param]) -> None:
        params = list(params)
        by_name = {p.name: p for p in params}
        order: list[Param] = []
        state: dict[str, int] = {}

        def visit(p: Param, path: tuple) -> None:
            if state.get(p.name) == 2:
                return
            if state.get(p.name) == 1:
                raise SearchSpaceError(f"search.{p.name}: its when conditions form a cycle: "
                                       f"{' -> '.join(path + (p.name,))}")
            state[p.name] = 1
            for key, _ in p.when:
                if key in by_name:
                    visit(by_name[key], path + (p.name,))
            state[p.name] = 2
            order.append(p)

        for p in params:
            visit(p, ())
        self.params: list[Param] = order

    def __iter__(self):
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)

    def __getitem__(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def conditional(self) -> bool:
        return any(p.when for p in self.params)

    def check_config(self, config: Mapping) -> None:
        """Every ``when`` key is a parameter or set in ``config``; every parameter's table path is settable."""
        names = set(self.names)
        for p in self.params:
            for key, _ in p.when:
                if key not in names and get_dotted(config, key, _MISSING) is _MISSING:
                    raise SearchSpaceError(f"search.{p.name}: when refers to {key!r}, which is neither a searched "
                                           f"parameter nor set in the config")
            set_dotted(copy.deepcopy(dict(config)), p.name, None)

    def suggest(self, trial: Any, config: Mapping, *, grid: bool = False) -> tuple[dict, dict]:
        """``(params, trial_config)``: the trial's values (active parameters only) and a deep copy of
        ``config`` with them set."""
        cfg = copy.deepcopy(dict(config))
        params = {}
        for p in self.params:
            if not p.active(cfg):
                continue
            params[p.name] = p.suggest(trial, grid=grid)
            set_dotted(cfg, p.name, params[p.name])
        return params, cfg

    def decode(self, stored: Mapping) -> dict:
        """Values as the config takes them from Optuna's stored ``trial.params``."""
        out = {}
        for k, v in stored.items():
            try:
                out[k] = self[k].decode(v)
            except KeyError:
                out[k] = v
        return out

    def apply(self, config: Mapping, params: Mapping) -> dict:
        cfg = copy.deepcopy(dict(config))
        for k, v in params.items():
            set_dotted(cfg, k, v)
        return cfg

    def grid_search_space(self) -> dict[str, list]:
        """``{name: values}`` for ``optuna.samplers.GridSampler`` (values as stored, i.e. encoded)."""
        return {p.name: [p.encode(v) for v in p.grid_values()] for p in self.params}

    def grid_points(self, config: Mapping) -> list[dict]:
        """Every point of the grid as ``{name: value}`` (conditional parameters only where active)."""
        points: list[tuple[dict, dict]] = [({}, copy.deepcopy(dict(config)))]
        for p in self.params:
            values = p.grid_values()
            nxt = []
            for params, cfg in points:
                if not p.active(cfg):
                    nxt.append((params, cfg))
                    continue
                for v in values:
                    c = copy.deepcopy(cfg)
                    set_dotted(c, p.name, v)
                    nxt.append(({**params, p.name: v}, c))
            points = nxt
        return [params for params, _ in points]


def parse_space(space: Mapping | SearchSpace) -> SearchSpace:
    """A ``SearchSpace`` from ``{dotted key: spec}`` (nested tables are flattened to dotted keys)."""
    if isinstance(space, SearchSpace):
        return space
    if not isinstance(space, Mapping):
        raise SearchSpaceError(f"search: expected a table of parameters, got {space!r}")
    params = []
    seen = set()
    for name, spec in _flatten(space):
        if name in seen:
            raise SearchSpaceError(f"search.{name}: given twice")
        seen.add(name)
        params.append(parse_param(name, spec))
    if not params:
        raise SearchSpaceError('search: no parameters to search; add e.g. "optim.lr" = {log_uniform = [1e-5, 1e-1]}')
    return SearchSpace(params)


def split_search_table(table: Mapping) -> tuple[dict, dict]:
    """``(settings, space)`` from a config's ``[search]`` table: the keys in ``SETTINGS`` configure the
    search, every other key is a parameter (a table of a distribution, or nested tables of them)."""
    if not isinstance(table, Mapping):
        raise SearchSpaceError(f"[search]: expected a table, got {table!r}")
    settings, space = {}, {}
    for k, v in table.items():
        if k in SETTINGS:
            settings[k] = v
        elif isinstance(v, Mapping):
            space[k] = v
        else:
            raise SearchSpaceError(f"search.{k}: unknown setting; the settings are {', '.join(SETTINGS)}, and a "
                                   f"parameter is a table such as {{choice = [...]}} or {{log_uniform = [a, b]}}")
    return settings, space
