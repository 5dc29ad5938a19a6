"""dho.catalog: the registries' facts for the workflow's parse, cached without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import dho.catalog as catalog_mod

PROBE = ("import json, sys; from dho.catalog import catalog; "
         "print(json.dumps({'facts': catalog(), 'torch': 'torch' in sys.modules}))")


def _probe(cache_dir) -> dict:
    env = dict(os.environ, DHO_CACHE_DIR=str(cache_dir))
    p = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_second_process_reads_the_cache_without_torch(tmp_path):
    first = _probe(tmp_path)
    assert first["torch"]  # a cold cache is filled from the registries themselves
    assert len(list(tmp_path.glob("catalog-*.json"))) == 1
    second = _probe(tmp_path)
    assert not second["torch"]
    assert second["facts"] == first["facts"] == json.loads(json.dumps(catalog_mod.live()))


def test_facts_match_the_registries():
    from dho.methods import METHODS
    from dho.models import STUDENTS
    from dho.results.paper import LAYOUT_NAMES, get_layout

    facts = catalog_mod.live()
    assert facts["students"] == STUDENTS.names()
    assert set(facts["methods"]) == set(METHODS.names())
    assert facts["methods"]["ce"] is False and facts["methods"]["dho"] is True
    assert list(facts["paper_layouts"]) == list(LAYOUT_NAMES)
    assert all(facts["paper_layouts"][name] == get_layout(name).source for name in LAYOUT_NAMES)


def test_in_process_registrations_are_seen(monkeypatch):
    from dho.methods import METHODS

    class Extra:
        needs_teacher = False

    monkeypatch.setitem(METHODS._items, "extra_test_method", Extra())
    assert catalog_mod.catalog()["methods"]["extra_test_method"] is False


def test_source_key_follows_every_package_file(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("A = 1\n")
    (tmp_path / "sub" / "b.py").write_text("B = 1\n")
    monkeypatch.setattr(catalog_mod, "PACKAGE", tmp_path)
    key = catalog_mod.source_key()
    (tmp_path / "sub" / "b.py").write_text("B = 2\n")
    assert catalog_mod.source_key() != key


def test_unwritable_cache_folder_still_answers(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    facts = _probe(blocker / "cache")["facts"]
    assert "dho" in facts["methods"]
