"""The README stays true: its configuration table matches the code."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.config import SETTINGS, Setting

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda setting: setting.env)
def test_the_configuration_table_has_a_true_row_for_each_setting(setting: Setting) -> None:
    rows = [line for line in README.splitlines() if line.startswith(f"| `{setting.env}`")]
    assert len(rows) == 1, f"README has no single row for {setting.env}"
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert cells[1] == f"`{setting.flag}`"
    assert cells[2] == setting.shown_default
    assert cells[3] == setting.help.replace("%%", "%")


def test_the_readme_names_both_commands() -> None:
    assert "make run" in README
    assert "make test" in README
