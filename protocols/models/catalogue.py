"""The models a gateway uses: the packaged ones, with a site's folder over them.

A file in the site folder adds a model or replaces the packaged one of the
same id. A broken file never breaks what does not need it: loading returns
the good models beside the problems per file, and only a device configured
with a broken model stops anything (the config check fails for it, so the
daemon refuses to start). A broken site file still hides the packaged model
of its id: the site meant its own, and running the packaged one instead
would not be what it configured.

The daemon, every field command and the config check call ``load_catalogue``
with the config's ``[gateway] models_dir``: one way to load, so they cannot
disagree about which file is in effect.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from .load import default_directory, scan
from .types import Model


@dataclass(frozen=True)
class Source:
    """Where a model (or a broken file) came from."""
    path: Path
    site: bool                  # from the site folder, not the package
    replaces_packaged: bool     # a site file of the id of a packaged model

    def as_dict(self) -> dict:
        return {"path": str(self.path), "site": self.site, "replaces_packaged": self.replaces_packaged}


@dataclass(frozen=True)
class BrokenFile:
    id: str                     # the file name without .toml: the id it would have
    source: Source
    problems: tuple[str, ...]   # "<key path>: <what is wrong>", in file order

    @property
    def path(self) -> Path:
        return self.source.path

    def lines(self) -> list[str]:
        return [f"{self.path}: {p}" for p in self.problems]

    def summary(self) -> str:
        """One line: the file, how many problems, the first."""
        n = len(self.problems)
        return f"{self.path} has {n} problem{'s' if n != 1 else ''}, the first: {self.problems[0]}"


class Catalogue(Mapping[str, Model]):
    """Model id -> Model for every model in effect (a read-only mapping, so
    it goes wherever a dict of models went), plus where each came from and
    the files that could not be used."""

    def __init__(self, models: dict[str, Model], sources: dict[str, Source],
                 broken: dict[str, BrokenFile], site_dir: Path | None, site_problem: str | None):
        self._models = models
        self.sources = sources
        self.broken = broken
        self.site_dir = site_dir
        self.site_problem = site_problem   # the folder exists but cannot be used

    def __getitem__(self, model_id: str) -> Model:
        return self._models[model_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)

    def source(self, model_id: str) -> Source:
        return self.sources[model_id]

    def site_models(self) -> list[str]:
        return sorted(m for m, s in self.sources.items() if s.site)

    def warnings(self) -> list[str]:
        """Every problem of every broken file, and a folder that cannot be read."""
        out = [self.site_problem] if self.site_problem else []
        for b in sorted(self.broken.values(), key=lambda b: str(b.path)):
            out += b.lines()
        return out


def load_catalogue(site_dir=None) -> Catalogue:
    """The packaged models, with the model files of `site_dir` (if given and
    present) added or replacing them by id. Never raises for a model file:
    a broken one is in ``.broken`` with its problems."""
    models, paths, broken_raw = scan(default_directory())
    sources = {m: Source(p, site=False, replaces_packaged=False) for m, p in paths.items()}
    broken = {i: BrokenFile(i, Source(p, False, False), tuple(pr)) for i, (p, pr) in broken_raw.items()}
    packaged = set(models) | set(broken)
    site_problem = None
    d = Path(site_dir) if site_dir is not None else None
    if d is not None and d.exists():
        if not d.is_dir():
            site_problem = f"{d}: not a folder (the site's model files go in a folder)"
        else:
            try:
                s_models, s_paths, s_broken = scan(d)
            except OSError as e:
                site_problem = f"{d}: cannot read the folder ({e.strerror or e})"
            else:
                for m, model in s_models.items():
                    models[m] = model
                    sources[m] = Source(s_paths[m], site=True, replaces_packaged=m in packaged)
                    broken.pop(m, None)
                for i, (p, pr) in s_broken.items():
                    models.pop(i, None)
                    sources.pop(i, None)
                    broken[i] = BrokenFile(i, Source(p, site=True, replaces_packaged=i in packaged), tuple(pr))
    return Catalogue(models, sources, broken, d, site_problem)
