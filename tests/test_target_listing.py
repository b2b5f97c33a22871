"""`edgekit targets` lists the built-in profiles from a cache keyed by their content."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from edgekit.targets import listing
from edgekit.targets.loader import builtin_names, load_target


def test_cached_listing_is_the_validated_one(tmp_path):
    first = listing.builtin_listing(cache=tmp_path)
    (written,) = tmp_path.glob("targets-*.json")
    assert json.loads(written.read_text()) == first
    assert listing.builtin_listing(cache=tmp_path) == first
    assert [entry["profile"] for entry in first] == [load_target(n).to_dict() for n in builtin_names()]
    cpu = next(entry["row"] for entry in first if entry["row"]["name"] == "cpu")
    assert "tflite: int8-full, float32 I/O, tflite:CPU" in cpu["formats"]


def test_a_corrupt_or_unwritable_cache_is_validated_again(tmp_path):
    expected = listing.builtin_listing(cache=tmp_path / "fresh")
    (written,) = (tmp_path / "fresh").glob("targets-*.json")
    written.write_text("{ half a file")
    assert listing.builtin_listing(cache=tmp_path / "fresh") == expected
    assert json.loads(written.read_text()) == expected  # and repaired
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    assert listing.builtin_listing(cache=blocked) == expected  # cache dir cannot exist: listed all the same


def test_editing_a_profile_changes_the_key(tmp_path, monkeypatch):
    profiles = tmp_path / "profiles"
    shutil.copytree(listing.PROFILE_DIR, profiles)
    monkeypatch.setattr(listing, "PROFILE_DIR", profiles)
    before = listing._digest()
    cpu = profiles / "cpu.toml"
    cpu.write_text(cpu.read_text() + "\n# an edit\n")
    assert listing._digest() != before


def test_a_cached_listing_imports_no_schema(tmp_path):
    probe = ("import sys\nfrom edgekit.cli import app\n"
             "try:\n    app(args=['targets'], prog_name='edgekit')\nexcept SystemExit:\n    pass\n"
             "print('LOADED=' + ','.join(m for m in ('pydantic', 'edgekit.targets.schema') if m in sys.modules), file=sys.stderr)")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    first = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    second = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert "LOADED=pydantic,edgekit.targets.schema" in first.stderr  # validated once
    assert second.stderr.strip().endswith("LOADED="), second.stderr
    assert first.stdout == second.stdout and "coral-edgetpu" in second.stdout
