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


def test_readme_table_shows_each_declared_default():
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Settings"):]
    table = section[:section.index("\n## ", 1)]
    rows = [line.split("|")[1:3] for line in table.splitlines() if line.startswith("| `")]
    checked = 0
    for names, default in rows:
        (name, *others) = re.findall(r"`([A-Z][A-Z0-9_]+)`", names)
        spec = next(s for s in SETTINGS if s.name == name)
        if others or not spec.default:
            continue
        assert default.strip() == f"`{spec.default}`", f"{name}: the README shows {default.strip()}"
        checked += 1
    assert checked >= 10


def test_the_design_document_has_its_sections():
    design = (README.parent / "docs" / "design.md").read_text(encoding="utf-8")
    for heading in ("## Exactly once", "## Stream lifecycle", "## Formats", "### Manifests",
                    "### Day markers and late events", "### Gap record", "### Dead letter", "### Pipeline identity"):
        assert heading in design


def test_readme_has_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert "make demo" in text and "make test" in text


def test_readme_has_the_reading_recipes():
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Reading the lake"):text.index("## Settings")]
    for name in ("duckdb-day", "duckdb-new", "polars-day", "polars-new"):
        assert f"<!-- recipe: {name} -->" in section
    assert "cloudFiles" in section and "python -m shared verify" in section
