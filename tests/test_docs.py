"""The README as a map and docs/ by topic: their sizes, their links, and the README's headline
held to the published study it is generated from."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from taloop.studies import headline

from .conftest import REPO

DOCS = sorted((REPO / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(path: Path) -> set[str]:
    heads = re.findall(r"^#{1,6} (.+)$", path.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in heads}


def test_the_readme_is_a_short_map_and_each_doc_a_topic_with_contents() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) <= 250
    assert len(DOCS) >= 6
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        assert len(lines) <= 400, doc.name
        assert lines[0].startswith("# ") and "Contents:" in lines[:12], doc.name


@pytest.mark.parametrize("page", [REPO / "README.md", *DOCS], ids=lambda p: p.name)
def test_every_relative_link_reaches_a_file_and_heading(page: Path) -> None:
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        assert path.exists(), f"{page.name}: {target}"
        if anchor:
            assert anchor in _anchors(path), f"{page.name}: {target}"


def test_every_number_in_the_readme_headline_is_the_published_studys() -> None:
    """The headline block is generated from reports/studies/<study>.json (taloop study
    headline --write); a hand edit or a republished study without regenerating fails here."""
    name, block = headline.in_readme((REPO / "README.md").read_text())
    assert block == headline.headline(name, REPO)
    assert re.search(r"\d", block)


DECIMAL = re.compile(r"\d+\.\d+")


def test_every_decimal_in_the_headline_prose_is_one_the_published_study_prints() -> None:
    """The prose around the generated block is written by hand: each measured number in it
    (a decimal; integers there are the setup: seeds, items, replies) must be one that the
    study's report (reports/studies/<study>.md) prints, so a typo or a stale figure after
    republishing fails."""
    readme = (REPO / "README.md").read_text()
    name, block = headline.in_readme(readme)
    published = REPO / "reports" / "studies"
    section = readme[readme.index("## Headline") : readme.index("\n## ", readme.index("## Headline") + 1)]
    prose = section.replace(block, "")
    printed = set(DECIMAL.findall((published / f"{name}.md").read_text()))
    numbers = DECIMAL.findall(prose)
    assert len(numbers) >= 10, "the headline prose states the result with its intervals"
    assert [n for n in numbers if n not in printed] == []


def test_headline_write_replaces_a_stale_block_and_nothing_else(tmp_path: Path) -> None:
    name, block = headline.in_readme((REPO / "README.md").read_text())
    stale = re.sub(r"\| 5 \|", "| 4 |", block)
    assert stale != block
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n\n{stale}\n\noutro\n")
    assert headline.write(readme, REPO) == name
    assert readme.read_text() == f"intro\n\n{block}\n\noutro\n"
