"""docs/cli.md is generated from the parsers and must not drift; coming-from-glow.md names
every glow flag and variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from glowlab.cli import build_parser, reference_markdown
from glowlab.glow import FLAGS

DOCS = Path(__file__).resolve().parent.parent / "docs"
REGENERATE = ("regenerate it: .venv/bin/python -c 'from glowlab.cli import reference_markdown as r; "
              "print(r(), end=\"\")' > docs/cli.md")


def subcommands() -> dict:
    parser = build_parser()
    return next(a for a in parser._actions if hasattr(a, "choices") and a.choices).choices


def test_cli_md_is_the_generated_reference() -> None:
    assert (DOCS / "cli.md").read_text() == reference_markdown(), f"docs/cli.md is stale; {REGENERATE}"


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_every_command_has_a_section_with_its_options_and_examples(name: str) -> None:
    text = reference_markdown()
    section = text.split(f"\n## glowlab {name}\n", 1)[1].split("\n## ", 1)[0]
    parser = subcommands()[name]
    for action in parser._actions:
        for flag in action.option_strings:
            if flag not in ("-h", "--help"):
                assert f"`{flag}" in section or f", {flag}" in section, flag
    assert "examples:" in section and f"glowlab {name}" in section.split("examples:", 1)[1]


def test_coming_from_glow_maps_every_flag_and_variable() -> None:
    text = (DOCS / "coming-from-glow.md").read_text()
    rows = re.findall(r"^\| `(-[\w-]+)", text, re.M)
    assert set(FLAGS) <= {row.lstrip("-") for row in rows}
    for variable in ("GLOW_QUEUE", "GLOW_SMTP_SERVER", "GLOW_MAIL_FROM"):
        assert f"| `{variable}` |" in text
