"""The contract lives in docs/: no product or test file cites a document outside the repository,
no file outside docs/ cites one of those documents' sections or an issue (say what the thing
is about, pointing into docs/ where useful), every link between the pages of docs/ (and its
anchor) leads somewhere, and docs/README.md lists every page."""

from __future__ import annotations

import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(REPO, "docs")
# The names of the documents that were outside the repository (spelt in pieces so this file does not cite them).
OUTSIDE = re.compile(r"\b" + "INTER" + r"FACE\b|\b" + "EVE" + r"NTS\.md\b|\b" + "DE" + r"SIGN\b")
CODE_DIRS = ("agent", "bus", "sinks", "common", "alarms", "console", "tools", "tests", "packaging", "docs")
TEXT_SUFFIXES = (".py", ".md", ".yml", ".yaml", ".toml", ".cfg", ".service", ".sh", ".txt", ".j2", ".html", ".js")
# Where each section of that contract lives now, for the failure message.
PAGES = (
    "2 commands.md, 3 config.md, 4 bus.md, 5 delivery.md, 6 control-api.md, 7 metrics.md, 8 files.md, "
    "9 console.md, 10 import-pexip.md; the event catalogue events.md; the design: README, Design"
)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# Outside docs/, also: a section number after a page's name or a section sign, and an issue by
# its number or its possessive (spelt in pieces too, for the same reason).
CITATION = re.compile(
    OUTSIDE.pattern
    + r"|\.md,?\s+(?:and|section|sections|§)\s*\d+\b|§\s*\d"
    + r"|\b[Ii]ssues?[\s-]+#?\d+|\b[Ii]ssue"
    + r"'s\b"
)
# Not the project's own text: version control, environments, caches, build output, results.
SKIP_DIRS = {
    ".git",
    ".venv",
    "__pycache__",
    ".pytest_cache",
    ".hypothesis",
    ".ruff_cache",
    "build",
    "dist",
    "results",
    "node_modules",
}


def _files():
    for top in CODE_DIRS:
        for root, dirs, names in os.walk(os.path.join(REPO, top)):
            dirs[:] = [d for d in dirs if d not in ("build", "__pycache__", ".venv") and not d.startswith(".")]
            for name in names:
                if name.endswith(TEXT_SUFFIXES):
                    yield os.path.join(root, name)
    for name in ("README.md", "Makefile", "setup.cfg", "pyproject.toml"):
        yield os.path.join(REPO, name)


def test_no_file_cites_a_document_outside_the_repository():
    cited = []
    for path in _files():
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as fh:
            for n, line in enumerate(fh, 1):
                if OUTSIDE.search(line):
                    cited.append(f"{os.path.relpath(path, REPO)}:{n}: {line.strip()[:100]}")
    assert not cited, f"cite the page of docs/ instead (sections: {PAGES}):\n" + "\n".join(cited)


def _files_outside_docs():
    """Every text file of the repository but docs/ (a file holding a NUL byte is not text)."""
    for root, dirs, names in os.walk(REPO):
        dirs[:] = sorted(
            d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info") and not (root == REPO and d == "docs")
        )
        for name in sorted(names):
            path = os.path.join(root, name)
            with open(path, "rb") as fh:
                data = fh.read()
            if b"\0" not in data:
                yield path, data.decode("utf-8", errors="replace")


def citations(text: str) -> list[tuple[int, str]]:
    """(line, what) of each citation of an outside document, its sections or an issue in TEXT
    (a number may stand on the next line)."""
    return [(text.count("\n", 0, m.start()) + 1, " ".join(m.group(0).split())) for m in CITATION.finditer(text)]


def test_no_file_outside_docs_cites_a_section_or_an_issue():
    cited = [
        f"{os.path.relpath(path, REPO)}:{line}: {what}"
        for path, text in _files_outside_docs()
        for line, what in citations(text)
    ]
    assert not cited, f"say what it is about, pointing into docs/ (sections: {PAGES}):\n" + "\n".join(cited)


def test_the_citation_check_tells_citations_from_prose():
    cited = [
        "INTER" + "FACE 6",
        "see INTER" + "FACE.md",
        "EVE" + "NTS.md",
        "the DE" + "SIGN notes",
        "docs/config.md " + "and 9",
        "metrics.md " + "section 7",
        "§" + " 4",
        "is" + "sue 10",
        "Is" + "sue 19's rows",
        "(is" + "sues 10 and 15)",
        "a pre-is" + "sue-15 Publisher",
        "paced (is" + "sue\n10's rows)",
        "is" + "sue #12",
        "the earlier is" + "sue's goals",
    ]
    prose = [
        "DE" + "SIGNATED",
        "DE" + "SIGNS",
        "INTER" + "FACES",
        "an interface",
        "the design",
        "open issues",
        "known issues: none",
        "reis" + "sue 3 tokens",
        "issued by the old CA",
        "docs/config.md and docs/console.md",
        "events.md",
        "tis" + "sue 5",
    ]
    assert [bool(citations(text)) for text in cited] == [True] * len(cited)
    assert [text for text in prose if citations(text)] == []
    assert citations("one\ntwo is" + "sue\n15") == [(2, "is" + "sue 15")]


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: str) -> set[str]:
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} +(.+)$", text, flags=re.M)}


def broken_links(doc: str) -> list[str]:
    with open(doc, encoding="utf-8") as fh:
        text = re.sub(r"```.*?```", "", fh.read(), flags=re.S)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # https://, mailto:
        page, _, fragment = target.partition("#")
        where = os.path.normpath(os.path.join(os.path.dirname(doc), page)) if page else doc
        if not os.path.exists(where):
            broken.append(f"{target}: no such file")
        elif fragment and where.endswith(".md") and fragment not in anchors(where):
            broken.append(f"{target}: no such heading")
    return broken


def test_every_link_of_docs_leads_to_a_page_and_heading_that_exist():
    broken = {}
    for name in sorted(os.listdir(DOCS)):
        if name.endswith(".md"):
            found = broken_links(os.path.join(DOCS, name))
            if found:
                broken[name] = found
    assert not broken, broken


def test_the_link_check_finds_a_missing_page_and_heading(tmp_path):
    (tmp_path / "a.md").write_text("# A page\n\n[b](b.md) [self](#a-page) [gone](#nowhere) [web](https://x.org)\n")
    assert broken_links(str(tmp_path / "a.md")) == ["b.md: no such file", "#nowhere: no such heading"]


def test_the_index_lists_every_page():
    with open(os.path.join(DOCS, "README.md"), encoding="utf-8") as fh:
        linked = set(LINK.findall(fh.read()))
    pages = {n for n in os.listdir(DOCS) if n.endswith((".md", ".json")) and n != "README.md"}
    assert pages <= linked, f"not in docs/README.md: {sorted(pages - linked)}"
