"""README and docs carry the measured figures, generated from benchmarks/results/*.json."""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import report  # noqa: E402


def test_readme_headline_table_is_the_generated_one():
    readme = (ROOT / "README.md").read_text()
    assert report.headline_markdown() in readme, "README's table drifted: paste `python benchmarks/report.py`"


def test_readme_is_short_and_has_both_commands():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 140
    assert "psfkit demo" in readme and "python -m pytest" in readme


def test_every_suite_renders(tmp_path):
    path = report.write_rst(tmp_path / "tables.inc")
    text = path.read_text()
    for suite in report.SUITES:
        assert suite[0].upper() + suite[1:] in text
    assert "nan" not in text.lower().split()
