"""The package's documentation (part of packaging/build_deb.py): the Debian changelog,
checked against the agent's version or given an entry for a `--version` build; the
copyright file with the name, version and licence of every distribution bundled in the
venv; the man pages, READMEs and Prometheus examples; and the lintian overrides."""

from __future__ import annotations

import json
import os

from deb_common import DOC_DIR, HERE, PACKAGE, ROOT, BuildError, gzip_file, install_file, project_version, run


def changelog_checked(version: str) -> str:
    path = os.path.join(HERE, "debian", "changelog")
    with open(path, encoding="utf-8") as fh:
        first = fh.readline()
    top = first.split("(", 1)[1].split(")", 1)[0] if "(" in first else ""
    if top != version:
        raise BuildError(
            f"packaging/debian/changelog starts with version {top!r} but common.__version__ is {version!r}: "
            "add a changelog entry for the new version"
        )
    return path


def changelog_with_entry(version: str, work: str) -> str:
    """A copy of the committed changelog (in WORK, never the committed file) with an entry for
    VERSION on top: what a build with --version ships, so the package's changelog names its version."""
    with open(changelog_checked(project_version()), encoding="utf-8") as fh:
        committed = fh.read()
    # The top entry's own trailer (maintainer and date), so the same tree builds the same package.
    trailer = next(line for line in committed.splitlines() if line.startswith(" -- "))
    entry = (
        f"{PACKAGE} ({version}) unstable; urgency=medium\n\n"
        f"  * Built with build_deb.py --version {version} (agent {project_version()}); not a release.\n\n"
        f"{trailer}\n\n"
    )
    path = os.path.join(work, "changelog")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(entry + committed)
    return path


def bundled_distributions(venv: str) -> list[tuple[str, str, str]]:
    """(name, version, license) of every distribution in the venv."""
    script = r"""
import importlib.metadata as md, json, sys
out = []
for d in md.distributions():
    m = d.metadata
    lic = m.get("License-Expression") or ""
    if not lic:
        raw = (m.get("License") or "").strip()
        if raw and "\n" not in raw and len(raw) <= 60:
            lic = raw
    if not lic:
        cls = [c.split("::")[-1].strip() for c in (m.get_all("Classifier") or []) if c.startswith("License ::")]
        lic = ", ".join(cls) or "see its .dist-info directory"
    out.append((m["Name"], d.version, lic))
json.dump(sorted(out, key=lambda t: t[0].lower()), sys.stdout)
"""
    out = run([os.path.join(venv, "bin", "python3"), "-I", "-c", script], capture_output=True).stdout
    return [tuple(x) for x in json.loads(out)]


def install_docs(stage: str, venv: str, changelog: str) -> None:
    """Man pages, the doc directory (changelog, READMEs, examples, copyright) and the lintian overrides."""
    for page in sorted(os.listdir(os.path.join(HERE, "man"))):
        section = page.rsplit(".", 1)[1]
        gzip_file(
            os.path.join(HERE, "man", page), os.path.join(stage, "usr", "share", "man", f"man{section}", page + ".gz")
        )
    doc = os.path.join(stage, DOC_DIR)
    gzip_file(changelog, os.path.join(doc, "changelog.Debian.gz"))
    install_file(os.path.join(HERE, "README.md"), os.path.join(doc, "README.Debian"))
    if os.path.exists(os.path.join(ROOT, "README.md")):
        install_file(os.path.join(ROOT, "README.md"), os.path.join(doc, "README.md"))
    for name in sorted(os.listdir(os.path.join(HERE, "prometheus"))):
        install_file(os.path.join(HERE, "prometheus", name), os.path.join(doc, "examples", "prometheus", name))
    with open(os.path.join(HERE, "debian", "copyright.in"), encoding="utf-8") as fh:
        template = fh.read()
    bundled = "\n".join(f"  {n} {v}: {lic}" for n, v, lic in bundled_distributions(venv))
    with open(os.path.join(doc, "copyright"), "w", encoding="utf-8") as fh:
        fh.write(template.replace("@BUNDLED@", bundled))
    install_file(
        os.path.join(HERE, "debian", "lintian-overrides"),
        os.path.join(stage, "usr", "share", "lintian", "overrides", PACKAGE),
    )
