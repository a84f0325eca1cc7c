"""Finding data files that installed packages ship, without importing them."""
from __future__ import annotations

import importlib
import importlib.metadata as md
import pathlib
from typing import Any


class DataNotInstalledError(FileNotFoundError):
    """The data set is not installed here; the message says how to install it."""


def package_file(distribution: str, relpath: str, *, what: str, install: str) -> pathlib.Path:
    """The path of ``relpath`` inside the installed ``distribution``'s files."""
    try:
        dist = md.distribution(distribution)
    except md.PackageNotFoundError:
        raise DataNotInstalledError(f"{what}: the {distribution!r} package, which ships {relpath}, is not "
                                    f"installed; install it with: {install}") from None
    for f in dist.files or ():
        if f.as_posix() == relpath:
            path = pathlib.Path(dist.locate_file(f))
            if path.is_file():
                return path
            break
    raise DataNotInstalledError(f"{what}: {relpath} is missing from the installed {distribution} "
                                f"{dist.version}; reinstall it with: {install}")


def package_files(distribution: str, prefix: str, suffix: str, *, what: str, install: str
                  ) -> list[pathlib.Path]:
    """All files under ``prefix`` ending in ``suffix``, sorted by path."""
    try:
        dist = md.distribution(distribution)
    except md.PackageNotFoundError:
        raise DataNotInstalledError(f"{what}: the {distribution!r} package is not installed; install it "
                                    f"with: {install}") from None
    found = sorted(f.as_posix() for f in dist.files or ()
                   if f.as_posix().startswith(prefix) and f.as_posix().endswith(suffix))
    paths = [pathlib.Path(dist.locate_file(f)) for f in found]
    paths = [p for p in paths if p.is_file()]
    if not paths:
        raise DataNotInstalledError(f"{what}: no {prefix}*{suffix} files in the installed {distribution} "
                                    f"{dist.version}; reinstall it with: {install}")
    return paths


def optional_module(name: str, *, needed_for: str, install: str) -> Any:
    """The module ``name``, imported now; a ``DataNotInstalledError`` saying how to install it
    when it is missing (``needed_for``: "reading tables", ...)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise DataNotInstalledError(f"{needed_for} needs {name.split('.')[0]}, which is not installed; install "
                                    f"it with: {install}") from None
