"""The README's promises: its first-screen commands, its snippets, its links."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def code_block_after(heading: str, language: str) -> str:
    section = README.split(heading, 1)[1]
    found = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert found, f"no {language} block after {heading!r}"
    return found.group(1)


def test_first_screen_is_two_commands_and_ci_runs_the_test_one() -> None:
    first = code_block_after("# plausible-wsgi", "bash")
    commands = [line.split("#")[0].strip() for line in first.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert ci[-1] == "make test"  # exactly the README's test command, last
    assert "\ttest -x $(BIN)/python || $(PYTHON) -m venv $(VENV)" in (ROOT / "Makefile").read_text(
        encoding="utf-8"
    )


def test_testing_your_app_snippet_runs_as_pasted() -> None:
    snippet = code_block_after("## Testing your app", "python")
    exec(compile(snippet, "README.md", "exec"), {})


def test_links_are_absolute() -> None:
    """PyPI shows the README without the repository around it."""
    for text, target in re.findall(r"\[([^\]]+)\]\(([^)]+)\)", README):
        assert re.match(r"https?://", target) or target.startswith("#"), (text, target)
