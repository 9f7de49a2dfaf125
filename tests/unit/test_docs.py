"""The README's settings table and the settings the code reads agree."""

import re
from pathlib import Path

from shared.settings import SETTINGS

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_lists_every_setting():
    text = README.read_text(encoding="utf-8")
    table = text[text.index("## Settings"):]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    missing = [s.name for s in SETTINGS if s.name not in documented]
    assert not missing, f"settings missing from the README table: {missing}"


def test_readme_has_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert "make demo" in text and "make test" in text
