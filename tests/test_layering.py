"""House rule 1: packages import only downward, no module imports itself back round a circle, and
``import retrograd`` stays light (no training stack, no optional dependency)."""
import ast
import json
import pathlib
import subprocess
import sys

import pytest

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "retrograd"

# lower number = lower layer; a module may import only modules of a lower or equal layer
LAYERS = {
    "backend": 0, "random": 0, "accel": 0, "hooks": 0, "special": 0, "devices": 0, "accelerator": 0,
    "backends": 0,
    "scalars": 0, "versions": 0,
    "engine": 1, "grad_mode": 1, "kernels": 1, "cuda": 1, "distributed": 1, "dtype_info": 1, "amp": 1,
    "ops": 2, "ops_linalg": 2, "inference": 2,
    "tensor_convert": 3,
    "tensor_shape": 4,
    "tensor_math": 5, "tensor_reduce": 5, "tensor_inplace": 5, "tensor_compat": 5,
    "tensor": 6,
    "tensor_functions": 7, "tensor_numpy": 7, "flat": 7,
    "creation": 8, "autograd": 8, "legacy_types": 8,
    "nn.functional": 9,
    "nn": 10,
    "optim": 11, "data": 11, "utils": 11, "distributions": 11,
    "io": 12, "models": 12, "train": 12, "onnx": 12, "viz": 12,
    "tune": 13,
    "rl": 13,
    "cli": 14,
    "__main__": 15, "": 15,
}

# what `import retrograd` may load besides the standard library and retrograd itself
LIGHT_IMPORT_ALLOWED = {"numpy", "ml_dtypes"}


def _layer(mod: str) -> int:
    parts = mod.split(".")
    for n in range(len(parts), -1, -1):
        key = ".".join(parts[:n])
        if key in LAYERS:
            return LAYERS[key]
    raise KeyError(mod)


def _modules() -> dict[str, pathlib.Path]:
    mods = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _imports(mod: str, path: pathlib.Path):
    """The retrograd modules ``mod`` imports (anywhere in the file), relative to the package root;
    ``from pkg import name`` counts as importing ``pkg.name`` where that is a module, else ``pkg``."""
    pkg = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    pkg = [p for p in pkg if p]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module == "retrograd" or (node.module or "").startswith("retrograd."):
                target = node.module[len("retrograd."):] if node.module != "retrograd" else ""
            else:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                yield sub if sub in MODULES else target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("retrograd."):
                    yield alias.name[len("retrograd."):]


def _graph() -> dict[str, set[str]]:
    return {m: {t for t in _imports(m, p) if t != m} for m, p in MODULES.items()}


# package facades (__init__.py) re-export from their submodules and are exempt from the layer order
@pytest.mark.parametrize("mod,path", [(m, p) for m, p in sorted(MODULES.items()) if p.name != "__init__.py"],
                         ids=lambda v: str(v) if isinstance(v, str) else "")
def test_imports_only_downward(mod, path):
    mine = _layer(mod)
    for target in _imports(mod, path):
        assert _layer(target) <= mine, f"{mod} (layer {mine}) imports {target} (layer {_layer(target)})"


def test_layer_table_covers_every_module():
    for mod in MODULES:
        _layer(mod)  # raises KeyError for a module missing from the table


def test_layer_table_names_only_what_exists():
    missing = [key for key in LAYERS if key and key not in MODULES]
    assert not missing, f"the layer table names modules that do not exist: {missing}"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle in ``graph`` (as a list of modules, first == last), or None."""
    colour: dict[str, int] = {}
    for root in sorted(graph):
        if root in colour:
            continue
        stack = [(root, iter(sorted(graph[root])))]
        path = [root]
        colour[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif nxt in graph and colour.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt in graph and nxt not in colour:
                colour[nxt] = 1
                stack.append((nxt, iter(sorted(graph[nxt]))))
                path.append(nxt)
    return None


def test_no_import_circles():
    # a facade importing its own submodules is how packages are built; a submodule importing its
    # package's facade back is the circle this forbids, as is any circle between plain modules
    assert _cycle(_graph()) is None, f"import circle: {' -> '.join(_cycle(_graph()))}"


def test_cycle_finder_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_import_retrograd_is_light():
    # what `import retrograd` adds to sys.modules (the interpreter's start-up, site's .pth files
    # included, is not ours to judge)
    code = ("import sys, json; before = set(sys.modules); import retrograd; "
            "print(json.dumps(sorted(set(sys.modules) - before)))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout)
    ours = {m for m in loaded if m == "retrograd" or m.startswith("retrograd.")}
    assert "retrograd.nn" in ours and "retrograd.optim" in ours  # the check sees what it should
    heavy = sorted(m for m in ours if m.split(".")[1:2] and m.split(".")[1] in ("train", "tune", "cli", "models", "rl"))
    assert not heavy, f"`import retrograd` loads the training stack: {heavy}"
    third = sorted({m.split(".")[0] for m in loaded if m.split(".")[0] not in sys.stdlib_module_names}
                   - {"retrograd"} - LIGHT_IMPORT_ALLOWED)
    third = [m for m in third if not m.startswith("_") and m != "cython_runtime"]  # numpy's compiled parts
    assert not third, f"`import retrograd` loads optional or third-party modules: {third}"
    # and the lazy names still arrive on first use
    code = "import retrograd as rg; print(rg.train.Trainer.__name__, rg.models.MLP.__name__, callable(rg.save))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["Trainer", "MLP", "True"]
