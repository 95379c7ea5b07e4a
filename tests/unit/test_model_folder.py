"""load_catalogue: the packaged models with a site's model folder over them.

Real files in a temporary folder. Loading never raises for a model file: it
returns the good models, where each came from, and the broken files with
their problems, so one bad file breaks only what uses it.
"""
from __future__ import annotations

import os
import shutil

import pytest

from protocols.models import (
    Catalogue,
    catalogue,
    clear_cache,
    default_directory,
    load_catalogue,
    load_models,
)
from tests.unit.test_models import good, write

PACKAGED = default_directory()


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def copy_packaged(folder, model_id, new_id=None, edit=lambda s: s):
    text = (PACKAGED / f"{model_id}.toml").read_text(encoding="utf-8")
    new_id = new_id or model_id
    text = text.replace(f'id = "{model_id}"', f'id = "{new_id}"', 1)
    return write(folder, f"{new_id}.toml", edit(text))


def test_packaged_only():
    cat = load_catalogue()
    assert isinstance(cat, Catalogue) and set(cat) == set(load_models())
    assert cat.broken == {} and cat.warnings() == [] and cat.site_models() == []
    src = cat.source("turbine-evc")
    assert (src.path, src.site, src.replaces_packaged) == (PACKAGED / "turbine-evc.toml", False, False)


def test_a_missing_site_folder_is_no_problem(tmp_path):
    cat = load_catalogue(tmp_path / "models")
    assert set(cat) == set(load_models()) and cat.warnings() == []


def test_a_site_file_adds_a_model_and_another_replaces_one(tmp_path):
    added = write(tmp_path, "test-meter.toml", good())
    replaced = copy_packaged(tmp_path, "meihua-ic", edit=lambda s: s.replace('name_en = "', 'name_en = "Site: ', 1))
    cat = load_catalogue(tmp_path)
    assert cat["test-meter"].name_en == "Test meter"
    assert cat["meihua-ic"].name_en.startswith("Site: ")
    assert cat.source("test-meter").as_dict() == {"path": str(added), "site": True, "replaces_packaged": False}
    assert cat.source("meihua-ic").as_dict() == {"path": str(replaced), "site": True, "replaces_packaged": True}
    assert cat.site_models() == ["meihua-ic", "test-meter"]
    # the packaged set is untouched for everyone else
    assert not load_models()["meihua-ic"].name_en.startswith("Site: ")


def test_a_broken_file_is_set_aside_with_its_problems(tmp_path):
    bad = copy_packaged(tmp_path, "turbine-evc", "evc-copy",
                        lambda s: s.replace('name = "flow_m3h"', 'nmae = "flow_m3h"', 1))
    write(tmp_path, "test-meter.toml", good())
    write(tmp_path, "notes.txt", "not a model")
    cat = load_catalogue(tmp_path)
    assert "evc-copy" not in cat and "test-meter" in cat and "turbine-evc" in cat
    b = cat.broken["evc-copy"]
    assert b.path == bad and b.source.site and not b.source.replaces_packaged
    assert b.problems[0].startswith("register[2].nmae: unknown key")
    assert cat.warnings() == b.lines() and all(line.startswith(f"{bad}: ") for line in b.lines())
    assert b.summary().startswith(f"{bad} has {len(b.problems)} problems, the first: register[2].nmae")


def test_a_broken_replacement_hides_the_packaged_model(tmp_path):
    p = write(tmp_path, "meihua-ic.toml", "[model\n")
    cat = load_catalogue(tmp_path)
    assert "meihua-ic" not in cat
    b = cat.broken["meihua-ic"]
    assert b.source.replaces_packaged and b.problems[0].startswith("(file): not valid TOML")
    assert b.summary().startswith(f"{p} has 1 problem, the first: (file)")


def test_a_file_whose_id_is_not_its_name_is_broken_under_its_name(tmp_path):
    write(tmp_path, "mine.toml", good("other"))
    cat = load_catalogue(tmp_path)
    assert "other" not in cat and "mine" not in cat
    assert cat.broken["mine"].problems == ('model.id: "other" is not the file name "mine"',)


def test_a_site_path_that_is_a_file_or_cannot_be_read(tmp_path):
    f = write(tmp_path, "models", "x")
    cat = load_catalogue(f)
    assert set(cat) == set(load_models())
    assert cat.warnings() == [f"{f}: not a folder (the site's model files go in a folder)"]
    if os.geteuid() != 0:           # root reads any folder
        d = tmp_path / "locked"
        d.mkdir(mode=0o000)
        try:
            assert load_catalogue(d).site_problem.startswith(f"{d}: cannot read the folder")
        finally:
            d.chmod(0o755)


def test_an_edited_site_file_counts_without_a_restart(tmp_path):
    p = write(tmp_path, "test-meter.toml", good())
    assert "test-meter" in load_catalogue(tmp_path)
    p.write_text(good().replace('name_zh = "测试表"', 'name_zh = 3'), encoding="utf-8")
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    cat = load_catalogue(tmp_path)
    assert "test-meter" not in cat and cat.broken["test-meter"].problems == (
        "model.name_zh: 3 is not a non-empty string",)
    p.write_text(good(), encoding="utf-8")
    assert "test-meter" in load_catalogue(tmp_path)


def test_a_broken_file_in_the_packaged_folder_is_set_aside_too(tmp_path, monkeypatch):
    # the case: a packaged model copied to a new id with one key
    # misspelt, next to the packaged files themselves
    packaged = tmp_path / "packaged"
    shutil.copytree(PACKAGED, packaged, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    copy_packaged(packaged, "turbine-evc", "evc-copy", lambda s: s.replace("unit = ", "unti = ", 1))
    monkeypatch.setattr(catalogue, "default_directory", lambda: packaged)
    cat = load_catalogue(tmp_path / "no-site-folder")
    assert set(cat) == set(load_models()) and set(cat.broken) == {"evc-copy"}
    assert cat.broken["evc-copy"].problems[:2] == (
        "param[0].unti: unknown key (allowed: name, unit, type, default, min, max, meaning_en, meaning_zh)",
        'param[0].unit: missing ("" for a count)')
    assert not cat.broken["evc-copy"].source.site


def test_a_model_file_has_a_size_bound(tmp_path):
    # a site file is read whole: bounded, and said so instead of parsed
    p = write(tmp_path, "test-meter.toml", good() + "#" * (1 << 20))
    cat = load_catalogue(tmp_path)
    assert cat.broken["test-meter"].problems == (
        f"(file): {p.stat().st_size} bytes, more than a model file may have (1048576)",)
