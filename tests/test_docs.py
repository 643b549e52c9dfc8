"""The documentation: a README for the first hour, links that lead somewhere, a generated
configuration reference, and no setting named that does not exist."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from urllib.parse import unquote

import pytest

from edge.config_docs import render
from edge.settings import CONFIG_ENV, Settings, env_name
from tests.conftest import ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
README_MAX_LINES = 250

FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # https:, mailto:, …


def prose(text: str) -> str:
    """The text outside fenced code blocks (a `# comment` in a shell block is no heading)."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor of a page; a repeated heading gets -1, -2… as GitHub numbers them."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(prose(page.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> list[str]:
    """The targets of a page's Markdown links outside code."""
    text = CODE_SPAN.sub("", prose(page.read_text()))
    return LINK.findall(text)


def test_the_readme_fits_a_first_hour() -> None:
    lines = README.read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move the rest to docs/"


def test_every_docs_page_is_in_the_readmes_table_of_contents() -> None:
    targets = set(links(README))
    missing = [page.name for page in DOCS.glob("*.md") if f"docs/{page.name}" not in targets]
    assert missing == []


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        if EXTERNAL.match(target):
            continue
        path, _, anchor = target.partition("#")
        destination = (page.parent / unquote(path)).resolve() if path else page
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (destination.suffix != ".md" or anchor not in anchors(destination)):
            broken.append(f"{target}: no heading with that anchor")
    assert broken == [], f"{page.relative_to(ROOT)}: broken links"


def test_the_link_checker_finds_broken_links_and_anchors(tmp_path: Path) -> None:
    # Given a page with a good link, a missing file, a missing anchor and links in code
    page = tmp_path / "page.md"
    page.write_text(
        "# The beacon: `POST /e`\n\n## Segment's analytics.js\n\n"
        "[ok](#the-beacon-post-e) [ok](#segments-analyticsjs) [gone](other.md) [bad](#nowhere)"
        " `[code](nowhere.md)`\n\n```sh\n# not a heading\n[x](missing.md)\n```\n"
    )
    # Then only the two broken ones are found
    assert links(page) == ["#the-beacon-post-e", "#segments-analyticsjs", "other.md", "#nowhere"]
    assert anchors(page) == {"the-beacon-post-e", "segments-analyticsjs"}


def test_the_configuration_reference_is_what_the_generator_makes() -> None:
    written = (DOCS / "configuration.md").read_text()
    assert written == render(), (
        "docs/configuration.md is out of date: "
        ".venv/bin/python -m edge.config_docs > docs/configuration.md"
    )


def test_every_setting_the_docs_name_exists() -> None:
    known = {env_name(spec.name) for spec in fields(Settings)} | {CONFIG_ENV}
    for page in PAGES:
        named = set(re.findall(r"\bROKT_EDGE_[A-Z0-9_]*[A-Z0-9]\b", page.read_text()))
        assert named - known == set(), f"{page.relative_to(ROOT)} names unknown settings"


def test_every_pointer_from_the_code_into_docs_resolves() -> None:
    # Module docstrings leave a few lines and a pointer such as docs/architecture.md#processing
    broken = []
    for module in sorted((ROOT / "edge").rglob("*.py")):
        for path, anchor in re.findall(r"\bdocs/([\w-]+\.md)(?:#([\w-]+))?", module.read_text()):
            page = DOCS / path
            if not page.exists() or (anchor and anchor not in anchors(page)):
                broken.append(f"{module.relative_to(ROOT)}: docs/{path}#{anchor}")
    assert broken == []
