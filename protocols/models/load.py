"""Model files -> Models: one file, a folder of them, and the cache.

A file's problems come back as ``<key path>: <what is wrong>``; the public
functions put the file's name in front, as docs/models/format.md shows.
"""
from __future__ import annotations

import os
import tomllib
from importlib import resources
from pathlib import Path

from .checker import ModelChecker
from .types import Model, ModelError

# A model file is read whole: the largest packaged one is under 30 KiB, so
# 1 MiB leaves room for any real device and stops a wrong file (a log, a
# firmware image) dropped in the site folder from being parsed.
MAX_FILE_BYTES = 1 << 20


def check_file(path) -> tuple[Model | None, list[str]]:
    """The model in `path` and its problems (key paths, no file name)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_FILE_BYTES:
                return None, [f"(file): {size} bytes, more than a model file may have ({MAX_FILE_BYTES})"]
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as e:
        return None, [f"(file): not valid TOML: {e}"]
    except UnicodeDecodeError as e:
        return None, [f"(file): not UTF-8 text (bad byte at offset {e.start})"]
    except OSError as e:
        return None, [f"(file): cannot read: {e.strerror or e}"]
    checker = ModelChecker(path.stem)
    model = checker.check(data)
    return model, checker.problems


def load_model(path) -> Model:
    """One model file, fully checked; ModelError lists every problem."""
    model, problems = check_file(path)
    if problems or model is None:
        name = Path(path).name
        raise ModelError([f"{name}: {p}" for p in problems] or [f"{name}: (file): not a model"])
    return model


def default_directory() -> Path:
    """The packaged model files, wherever the package is installed (not the CWD)."""
    return Path(str(resources.files(__package__)))


# path -> ((size, mtime), model) for files that checked out. Keyed by file
# so an edited site file counts without a restart while a repeat call from
# the daemon or the CLI costs one stat per file; a file with problems is
# checked again every time, so fixing it is seen at once.
_cache: dict[Path, tuple[tuple[int, int], Model]] = {}


def _checked(path: Path) -> tuple[Model | None, list[str]]:
    try:
        st = path.stat()
    except OSError as e:
        return None, [f"(file): cannot read: {e.strerror or e}"]
    sig = (st.st_size, st.st_mtime_ns)
    hit = _cache.get(path)
    if hit is not None and hit[0] == sig:
        return hit[1], []
    model, problems = check_file(path)
    if model is not None and not problems:
        _cache[path] = (sig, model)
    return model, problems


def model_files(directory: Path) -> list[Path]:
    """The *.toml files of a folder, by name; OSError when it cannot be listed."""
    with os.scandir(directory) as it:
        names = sorted(e.name for e in it if e.name.endswith(".toml") and e.is_file())
    return [directory / n for n in names]


def scan(directory: Path) -> tuple[dict[str, Model], dict[str, Path], dict[str, tuple[Path, list[str]]]]:
    """Every model file of a folder: (good models by id, their files by id,
    broken files by the id their name gives them -> (file, problems))."""
    d = Path(os.path.abspath(directory))
    models: dict[str, Model] = {}
    paths: dict[str, Path] = {}
    broken: dict[str, tuple[Path, list[str]]] = {}
    for p in model_files(d):
        model, problems = _checked(p)
        if model is None or problems:
            broken[p.stem] = (p, problems or ["(file): not a model"])
        else:
            models[model.id] = model
            paths[model.id] = p
    return models, paths, broken


def _scan_or_problem(directory) -> tuple[dict[str, Model], list[str]]:
    d = Path(directory) if directory is not None else default_directory()
    if not d.is_dir():
        return {}, [f"{d}: (directory): not found"]
    try:
        models, _paths, broken = scan(d)
    except OSError as e:
        return {}, [f"{d}: (directory): cannot be read: {e.strerror or e}"]
    return models, [f"{p.name}: {x}" for p, problems in broken.values() for x in problems]


def load_models(directory=None) -> dict[str, Model]:
    """Every model file in ``directory`` (default: the packaged models), by id.

    Raises ModelError listing every problem in every file. For what a
    gateway uses (the packaged models with a site's folder over them, a
    broken file set aside instead of raising) see ``load_catalogue``.
    """
    models, problems = _scan_or_problem(directory)
    if problems:
        raise ModelError(problems)
    return models


def validate_all(directory=None) -> list[str]:
    """Every problem in every model file of ``directory``; empty when all are good."""
    return _scan_or_problem(directory)[1]


def clear_cache() -> None:
    _cache.clear()
