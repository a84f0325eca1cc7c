"""The API reference pages, listed from the packages themselves at every site build.

Each group (a heading in the site's navigation) is a list of modules; each module's public names
(its ``__all__``, else its names without a leading underscore, submodules left out) become pages:
one page per class, and one page per function family, where a family is the functions defined in
one module (``nn/functional/loss.py`` gives the "loss" page of ``nn.functional``). mkdocstrings
renders every page from the docstrings and signatures. A module that does not exist yet (the RL
packages before they land) is left out with a note in the build log; any other import error fails
the build. An object exported from several modules gets one page, in the first group that lists it.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import types

# (title, url folder, modules); the order here is the order in the navigation
GROUPS = [
    ("Tensor & autograd", "tensor", ["retrograd", "retrograd.autograd", "retrograd.autograd.functional",
                                     "retrograd.amp"]),
    ("nn", "nn", ["retrograd.nn", "retrograd.nn.init", "retrograd.nn.utils", "retrograd.nn.parallel"]),
    ("nn.functional", "nn.functional", ["retrograd.nn.functional"]),
    ("optim & schedules", "optim", ["retrograd.optim", "retrograd.optim.lr_scheduler", "retrograd.optim.schedules",
                                    "retrograd.optim.swa_utils"]),
    ("data", "data", ["retrograd.data"]),
    ("train", "train", ["retrograd.train"]),
    ("tune", "tune", ["retrograd.tune"]),
    ("io", "io", ["retrograd.io", "retrograd.io.checkpoint"]),
    ("models", "models", ["retrograd.models"]),
    ("onnx", "onnx", ["retrograd.onnx"]),
    ("distributed", "distributed", ["retrograd.distributed"]),
    ("distributions", "distributions", ["retrograd.distributions"]),
    ("rl", "rl", ["retrograd.rl"]),
]


@dataclasses.dataclass
class Page:
    group: str     # the group's title
    path: str      # e.g. "api/nn/Linear.md"
    title: str     # navigation title
    content: str   # markdown: a heading and ::: directives
    kind: str = "class"  # "class", "functions" (a family) or "more" (names rendered from the objects)


def _public(module: types.ModuleType) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    return [n for n in names if not isinstance(getattr(module, n, None), types.ModuleType)]


def _import(name: str, log) -> types.ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is not None and (e.name == name or name.startswith(e.name + ".")):
            log(f"API reference: {name} does not exist in this checkout; its pages are left out")
            return None
        raise


def pages(log=print) -> list[Page]:
    """Every API page, in navigation order."""
    out: list[Page] = []
    seen: set[int] = set()
    for title, folder, modules in GROUPS:
        group_pages: list[Page] = []
        used: dict[str, str] = {}
        for mod_name in modules:
            module = _import(mod_name, log)
            if module is None:
                continue
            families: dict[str, list[str]] = {}
            loose: list[str] = []
            for name in _public(module):
                obj = getattr(module, name)
                if id(obj) in seen:
                    continue
                home = getattr(obj, "__module__", None)
                if inspect.isclass(obj) and home and _defined_in(home, obj):
                    seen.add(id(obj))
                    stem = name
                    _claim(used, stem, f"{mod_name}.{name}")
                    extra = _methods_table(obj) if obj.__name__ == "Tensor" and mod_name == "retrograd" else ""
                    group_pages.append(Page(title, f"api/{folder}/{stem}.md", name,
                                            f"::: {mod_name}.{name}\n{extra}"))
                elif inspect.isfunction(obj) and home and _defined_in(home, obj):
                    seen.add(id(obj))
                    families.setdefault(home, []).append(name)
                else:
                    loose.append(name)
            for home, names in families.items():
                base = modules[0] + "."
                rel = (home[len(base):] if home.startswith(base) else
                       home[len("retrograd."):] if home.startswith("retrograd.") else home)
                stem = rel.replace(".", "-") + "-functions"
                label = f"{rel.replace('_', ' ')} functions"
                if stem.lower() in used:  # functions of one module exported by two modules of the group
                    stem = mod_name.rsplit(".", 1)[-1] + "-" + stem
                    label += f" (in {mod_name})"
                _claim(used, stem, home)
                body = [f"# `{mod_name}`: {label}", "",
                        f"Defined in `{home}`; use them as `{mod_name}.NAME`.", ""]
                body += [f"::: {mod_name}.{n}\n    options:\n      heading_level: 2\n" for n in names]
                group_pages.append(Page(title, f"api/{folder}/{stem}.md", label, "\n".join(body), "functions"))
            if loose:
                group_pages.append(_loose_page(title, folder, mod_name, module, loose, used))
        kind = {"class": 0, "functions": 1, "more": 2}
        out += sorted(group_pages, key=lambda p: (kind[p.kind], p.title.lower()))
    return out


def _defined_in(home: str, obj) -> bool:
    """True when ``obj`` can be found statically at ``home.<name>`` (not made at run time under
    another name), which is what mkdocstrings needs to render it from the source."""
    try:
        module = importlib.import_module(home)
    except ImportError:
        return False
    if getattr(module, getattr(obj, "__name__", ""), None) is not obj:
        return False
    if inspect.isfunction(obj):  # a def of that name (not a closure renamed at import time)
        return inspect.unwrap(obj).__code__.co_name == obj.__name__
    try:  # a class statement (not a type(...) call)
        inspect.getsourcelines(obj)
    except (OSError, TypeError):
        return False
    return True


def _first_line(obj) -> str:
    doc = inspect.getdoc(obj) or ""
    first = " ".join(doc.strip().split("\n\n")[0].split())
    if len(first) > 220:
        first = first[:217].rsplit(" ", 1)[0] + " ..."
    return first.replace("|", "\\|")


def _methods_table(cls) -> str:
    """Every public method and property of ``cls`` with its signature and first docstring line, read
    from the class at run time (most of Tensor's methods are bound from plain functions at import,
    which a reading of the source does not see)."""
    rows = []
    for name in sorted(dir(cls), key=str.lower):
        if name.startswith("_"):
            continue
        attr = inspect.getattr_static(cls, name)
        if isinstance(attr, property):
            sig, kind = "", "property"
        elif callable(getattr(cls, name)):
            try:
                s = inspect.signature(getattr(cls, name))
                params = [q.replace(annotation=inspect.Parameter.empty) for q in s.parameters.values()]
                if params and params[0].name == "self":
                    params = params[1:]
                sig = str(s.replace(parameters=params, return_annotation=inspect.Signature.empty))
            except (TypeError, ValueError):
                sig = "(...)"
            kind = "method"
        else:
            continue
        text = f"{name}{sig}".replace("`", "'").replace("|", "\\|")
        what = _first_line(getattr(cls, name)) or f"as PyTorch's `Tensor.{name}`"
        rows.append(f"| `{text}` | {kind} | {what} |")
    return ("\n## Every method and property\n\nRead from the class at build time "
            f"({len(rows)} names; the ones above have their whole docstring).\n\n"
            "| name and signature | kind | what it does |\n|---|---|---|\n" + "\n".join(rows) + "\n")


def _claim(used: dict[str, str], stem: str, what: str) -> None:
    key = stem.lower()
    if key in used:
        raise ValueError(f"API reference: {what} and {used[key]} would share the page {stem}.md")
    used[key] = what


def _loose_page(title, folder, mod_name, module, names, used) -> Page:
    """Names mkdocstrings cannot render from the source (functions made at import time, dtypes,
    constants): a table with each name's kind and first docstring line, read from the object."""
    stem = mod_name.replace(".", "-") + "-more"
    _claim(used, stem, mod_name)
    rows = []
    for name in sorted(names, key=str.lower):
        obj = getattr(module, name)
        if inspect.isclass(obj):
            kind = "class"
        elif callable(obj):
            kind = "function"
        else:
            kind = f"`{type(obj).__name__}`"
        doc = inspect.getdoc(obj) if (callable(obj) or inspect.isclass(obj)) else None
        if doc:
            first = " ".join(doc.strip().split("\n\n")[0].split())
            if len(first) > 220:
                first = first[:217].rsplit(" ", 1)[0] + " ..."
        else:
            first = " ".join(repr(obj).split())
            first = "`" + (first if len(first) <= 120 else first[:117] + "...").replace("`", "'") + "`"
        first = first.replace("|", "\\|")
        rows.append(f"| `{mod_name}.{name}` | {kind} | {first} |")
    body = [f"# `{mod_name}`: more names", "",
            f"Names of `{mod_name}` made at import time (the Tensor methods offered as functions, such as "
            "`rg.exp(x)` for `x.exp()`, dtypes, constants). Their first docstring line is below; "
            "for a Tensor method see [Tensor](Tensor.md) when it is one." if mod_name == "retrograd" else
            f"Names of `{mod_name}` that are not classes or functions defined in a module (constants, "
            "objects made at import time).", "",
            "| name | kind | what it is |", "|---|---|---|", *rows, ""]
    return Page(title, f"api/{folder}/{stem}.md", f"more names of {mod_name}", "\n".join(body), "more")


def index(pages_: list[Page]) -> str:
    """The API reference's front page: the groups and their pages."""
    lines = ["# API reference", "",
             "Generated from the docstrings and signatures of the installed package with mkdocstrings: "
             "one page per public class, and one page per family of functions (the functions of one "
             "module). `import retrograd as rg` gives the top-level names; the other groups are "
             "`rg.nn`, `rg.optim`, ... as titled. Names and semantics follow PyTorch's "
             "(see [Coming from PyTorch](../reference/pytorch.md)).", ""]
    group = None
    for p in pages_:
        if p.group != group:
            group = p.group
            lines += ["", f"## {group}", ""]
        lines.append(f"- [{p.title}]({p.path[len('api/'):]})")
    return "\n".join(lines) + "\n"
