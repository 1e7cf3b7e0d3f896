"""The contract lives in docs/: no product or test file cites a document outside the repository,
every link between the pages of docs/ (and its anchor) leads somewhere, and docs/README.md
lists every page."""

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
PAGES = ("2 commands.md, 3 config.md, 4 bus.md, 5 delivery.md, 6 control-api.md, 7 metrics.md, 8 files.md, "
         "9 console.md, 10 import-pexip.md; the event catalogue events.md; the design: README, Design")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


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
