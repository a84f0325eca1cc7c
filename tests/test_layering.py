"""House rule 1: packages import only downward."""
import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "retrograd"

# lower number = lower layer; a module may import only modules of a lower or equal layer
LAYERS = {
    "backend": 0, "random": 0, "accel": 0, "hooks": 0,
    "autograd.engine": 1,
    "ops": 2,
    "tensor": 3, "flat": 3,
    "creation": 4, "autograd.function": 4, "autograd.gradcheck": 4, "autograd.functional": 4,
    "autograd": 4,
    "functional": 5,
    "nn": 6, "optim": 7, "data": 7, "train": 8, "io": 8, "models": 8, "tune": 9, "distributed": 9, "rl": 9,
    "cli": 10, "config": 10, "__main__": 11, "": 11,
}


def _layer(mod: str) -> int:
    parts = mod.split(".")
    for n in range(len(parts), -1, -1):
        key = ".".join(parts[:n])
        if key in LAYERS:
            return LAYERS[key]
    raise KeyError(mod)


def _modules():
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _imports(mod: str, path: pathlib.Path):
    pkg = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = pkg[: len(pkg) - node.level + 1] if node.level > 1 else pkg
            target = ".".join(base + ([node.module] if node.module else []))
            if node.module is None:
                for alias in node.names:
                    yield ".".join(base + [alias.name])
            else:
                yield target
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("retrograd"):
            yield node.module[len("retrograd."):] if node.module != "retrograd" else ""
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("retrograd."):
                    yield alias.name[len("retrograd."):]


# package facades (__init__.py) re-export from their submodules and are exempt
@pytest.mark.parametrize("mod,path", [(m, p) for m, p in _modules() if p.name != "__init__.py"],
                         ids=lambda v: str(v) if isinstance(v, str) else "")
def test_imports_only_downward(mod, path):
    mine = _layer(mod)
    for target in _imports(mod, path):
        assert _layer(target) <= mine, f"{mod} (layer {mine}) imports {target} (layer {_layer(target)})"


def test_layer_table_covers_every_module():
    for mod, _ in _modules():
        _layer(mod)  # raises KeyError for a module missing from the table
