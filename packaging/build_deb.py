#!/usr/bin/env python3
"""Builds eventsink-agent_VERSION_ARCH.deb from the work tree (`make deb`).

Owns the staging tree and everything in the package: a Python virtual
environment under /opt/eventsink-agent made with Debian's own python3 (the
project and its runtime dependencies installed as wheels), the /usr/bin
commands, the conffile, the systemd unit, docs, man pages, Prometheus assets,
and DEBIAN/ (control, conffiles, md5sums, maintainer scripts). The documentation
(changelog, copyright, man pages, lintian overrides) is packaging/deb_docs.py's, what
the steps share (names, BuildError, run, log) packaging/deb_common.py's.

How the venv is made relocatable: it is created *inside the staging tree*
(`python3.X -m venv STAGE/opt/eventsink-agent`), then every text file that names
the staging path (console-script shebangs, pyvenv.cfg) is rewritten to
/opt/eventsink-agent, and the build fails if any file still names it.
eventsinkctl's script is then replaced by its launcher (packaging/deb_launcher.py:
Python isolated and without site, the quicker start). The
venv's interpreter links point at /usr/bin/python3.X (an absolute path, valid
on every node with the same Debian release). No .pyc ships (Debian policy);
postinst byte-compiles on the node and prerm removes the byte-code. This needs
no root and never touches /opt on the build machine.

Run it with any Python 3.11+: `python3 packaging/build_deb.py [--out DIR] [--version VERSION]`.
The last line printed is the path of the .deb.
"""

from __future__ import annotations

import argparse
import configparser
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time

from deb_common import (
    COMMANDS,
    CONFFILE,
    HERE,
    PACKAGE,
    ROOT,
    VENV_PATH,
    BuildError,
    install_file,
    log,
    project_version,
    run,
)
from deb_docs import changelog_checked, changelog_with_entry, install_docs
from deb_launcher import site_packages, write_ctl_launcher

SYSTEM_PYTHON = os.environ.get("EVENTSINK_DEB_PYTHON", "/usr/bin/python3")


# ---------------------------------------------------------------- inputs


def debian_arch() -> str:
    return run(["dpkg", "--print-architecture"], capture_output=True).stdout.strip()


def system_python() -> tuple[str, str]:
    """(path of the versioned interpreter, 'X.Y') behind SYSTEM_PYTHON."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        raise BuildError(f"{SYSTEM_PYTHON} not found: apt-get install python3 python3-venv")
    xy = run(
        [SYSTEM_PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True
    ).stdout.strip()
    versioned = f"/usr/bin/python{xy}"
    if not os.access(versioned, os.X_OK):
        raise BuildError(f"{versioned} not found")
    if tuple(int(p) for p in xy.split(".")) < (3, 11):
        raise BuildError(f"{SYSTEM_PYTHON} is Python {xy}; eventsink-agent needs 3.11 or later")
    return versioned, xy


def project_packages() -> list[str]:
    """Top-level packages setup.cfg includes (agent, bus, sinks, alarms, ...)."""
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    lines = cfg.get("options.packages.find", "include", fallback="").split()
    return sorted({line.split(".")[0] for line in lines if line.strip()})


def source_copy(dest: str) -> str:
    """A clean copy of the installable project (no caches, no other tree files)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for pkg in project_packages():
        if os.path.isdir(os.path.join(ROOT, pkg)):
            shutil.copytree(os.path.join(ROOT, pkg), os.path.join(dest, pkg), ignore=ignore)
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        if os.path.exists(os.path.join(ROOT, name)):
            shutil.copy2(os.path.join(ROOT, name), dest)
    return dest


def dev_constraints(path: str) -> str | None:
    """Pins the versions of the venv running this script (the ones tests ran with)."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    pins = [line for line in out.splitlines() if "==" in line and not line.startswith(("-", "#"))]
    if not pins:
        return None
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(pins) + "\n")
    return path


# ---------------------------------------------------------------- the venv


def outer_pip_can_target() -> bool:
    """True when the pip of the interpreter running this script has --python (pip >= 22.3)."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "--version"], check=True, capture_output=True, text=True, timeout=60
        ).stdout
        major, minor = (int(x) for x in out.split()[1].split(".")[:2])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return False
    return (major, minor) >= (22, 3)


def build_venv(stage: str, work: str, wheelhouse: str) -> tuple[str, str]:
    """Creates and fills STAGE/opt/eventsink-agent; returns (venv dir, 'X.Y').

    The venv never gets pip of its own when the pip running this script can
    install into it (`pip --python`); otherwise it bootstraps pip with
    ensurepip and uninstalls it afterwards. Either way the node gets no pip.
    """
    python, xy = system_python()
    venv = os.path.join(stage, VENV_PATH.lstrip("/"))
    vpython = os.path.join(venv, "bin", "python3")
    env = dict(os.environ, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    if outer_pip_can_target():
        log(f"venv with {python} at {venv}")
        run([python, "-m", "venv", "--without-pip", venv])
        pip = [sys.executable, "-m", "pip", "--python", vpython]
    else:
        log(f"venv with {python} at {venv} (with ensurepip: {sys.executable} has no pip >= 22.3)")
        run([python, "-m", "venv", venv])
        pip = [vpython, "-m", "pip"]
    src = source_copy(os.path.join(work, "src"))
    constraints = dev_constraints(os.path.join(work, "constraints.txt"))
    log("installing the project and its runtime dependencies")
    install_with_wheelhouse(pip, src, constraints, wheelhouse, env)
    # The node never installs into this venv: no pip, no setuptools, no activate
    # scripts, and no console scripts but ours (dependencies bring their own).
    if pip[0] == vpython:
        run(pip + ["uninstall", "--quiet", "--yes", "pip", "setuptools"], env=env)
    for name in os.listdir(os.path.join(venv, "bin")):
        if name not in COMMANDS and not name.startswith("python"):
            os.remove(os.path.join(venv, "bin", name))
    for dirpath, dirnames, filenames in os.walk(venv):
        if "__pycache__" in dirnames:
            shutil.rmtree(os.path.join(dirpath, "__pycache__"))
            dirnames.remove("__pycache__")
        for name in filenames:
            if name.endswith(".pyc") or name == "direct_url.json":
                os.remove(os.path.join(dirpath, name))
    relocate(venv, VENV_PATH)
    for cmd_name in COMMANDS:
        if not os.path.exists(os.path.join(venv, "bin", cmd_name)):
            raise BuildError(f"the venv has no bin/{cmd_name}: check setup.cfg's console_scripts")
    install_ctl_launcher(stage, venv, xy)
    return venv, xy


def install_ctl_launcher(stage: str, venv: str, xy: str) -> None:
    """Replaces pip's eventsinkctl script with the launcher that starts Python isolated and without site
    (packaging/deb_launcher.py); it names the venv's final paths, so it needs no relocation."""
    packages = site_packages(VENV_PATH, xy)
    if not os.path.isdir(os.path.join(stage, packages.lstrip("/"), "agent")):
        raise BuildError(f"the venv has no {packages}/agent for eventsinkctl's launcher")
    write_ctl_launcher(os.path.join(venv, "bin", "eventsinkctl"), f"{VENV_PATH}/bin/python3", packages)


def install_with_wheelhouse(pip: list[str], src: str, constraints: str | None, wheelhouse: str, env: dict) -> None:
    """pip-installs SRC and its dependencies from the wheel cache WHEELHOUSE only.

    When the cache lacks something (first build, changed dependencies), it is
    filled from the package index first: wheels of the dependencies and of
    the build backend (setuptools, wheel), never of the project itself.
    """
    pinned = ["--constraint", constraints] if constraints else []
    install = pip + [
        "install",
        "--quiet",
        "--no-compile",
        "--no-warn-script-location",
        "--prefer-binary",
        "--no-index",
        "--find-links",
        wheelhouse,
        *pinned,
        src,
    ]
    if os.path.isdir(wheelhouse):
        if subprocess.run(install, capture_output=True, text=True, env=env).returncode == 0:
            return
    log(f"filling the wheel cache {wheelhouse} from the package index")
    os.makedirs(wheelhouse, exist_ok=True)
    run(
        pip
        + ["wheel", "--quiet", "--prefer-binary", "--wheel-dir", wheelhouse, *pinned, src, "setuptools>=61", "wheel"],
        env=env,
        capture_output=True,
    )
    for name in os.listdir(wheelhouse):
        if name.startswith("eventsink_agent-"):
            os.remove(os.path.join(wheelhouse, name))
    run(install, env=env, capture_output=True)


def relocate(venv: str, final: str) -> None:
    """Rewrites every mention of the staging path of the venv to its final path."""
    old, new = venv.encode(), final.encode()
    for dirpath, _, filenames in os.walk(venv):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                if os.readlink(path).startswith(venv):
                    raise BuildError(f"symlink {path} points into the staging tree")
                continue
            with open(path, "rb") as fh:
                data = fh.read()
            if old not in data:
                continue
            if b"\0" in data:
                raise BuildError(f"binary file {path} names the staging path {venv}")
            mode = os.stat(path).st_mode
            with open(path, "wb") as fh:
                fh.write(data.replace(old, new))
            os.chmod(path, stat.S_IMODE(mode))


# ---------------------------------------------------------------- the rest of the tree


def install_tree(stage: str, venv: str, changelog: str) -> None:
    P = lambda *p: os.path.join(stage, *p)  # noqa: E731 - a one-line path builder, read as P("etc", ...)
    for name in COMMANDS:
        os.makedirs(P("usr", "bin"), exist_ok=True)
        os.symlink(f"{VENV_PATH}/bin/{name}", P("usr", "bin", name))
    install_file(os.path.join(HERE, "etc", "agent.toml"), P(CONFFILE.lstrip("/")))
    install_file(
        os.path.join(HERE, "systemd", f"{PACKAGE}.service"), P("lib", "systemd", "system", f"{PACKAGE}.service")
    )
    install_docs(stage, venv, changelog)


def elf_objects(stage: str) -> list[str]:
    found = []
    for dirpath, _, filenames in os.walk(stage):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                with open(path, "rb") as fh:
                    if fh.read(4) == b"\x7fELF":
                        found.append(path)
    return found


def strip_objects(stage: str) -> None:
    """Strips the compiled modules that still carry a symbol table (as dh_strip would).

    Objects without one are left alone: those are the wheels' own libraries,
    often rewritten by patchelf, which `strip` can break.
    """
    for path in elf_objects(stage):
        sections = run(["readelf", "-S", "-W", path], capture_output=True).stdout
        if " .symtab " in sections:
            run(["strip", "--strip-unneeded", "--remove-section=.comment", "--remove-section=.note", path])


def normalize_modes(stage: str) -> None:
    """0755 for directories and programs (scripts in bin/), 0644 for everything else.

    Wheels mark shared libraries and some modules executable; in the venv's
    lib/ nothing needs to be.
    """
    lib = os.path.join(stage, VENV_PATH.lstrip("/"), "lib")
    for dirpath, _dirnames, filenames in os.walk(stage):
        os.chmod(dirpath, 0o755)
        in_lib = dirpath == lib or dirpath.startswith(lib + os.sep)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            mode = os.stat(path).st_mode
            os.chmod(path, 0o755 if mode & 0o111 and not in_lib else 0o644)


def installed_size_kib(stage: str) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(stage):
        total += len(dirnames)
        for name in filenames:
            path = os.path.join(dirpath, name)
            total += 1 if os.path.islink(path) else (os.path.getsize(path) + 1023) // 1024
    return total


def libc_dependency(stage: str, work: str) -> str:
    """The libc6 requirement of the venv's compiled modules, from dpkg-shlibdeps."""
    objects = elf_objects(stage)
    private_dirs = {os.path.dirname(p) for p in objects}
    if not objects:
        return ""
    fake = os.path.join(work, "shlibdeps")
    os.makedirs(os.path.join(fake, "debian"), exist_ok=True)
    with open(os.path.join(fake, "debian", "control"), "w", encoding="utf-8") as fh:
        fh.write(f"Source: {PACKAGE}\n\nPackage: {PACKAGE}\nArchitecture: any\n")
    cmd = ["dpkg-shlibdeps", "-O", "--ignore-missing-info", "--warnings=0"]
    cmd += [f"-l{d}" for d in sorted(private_dirs)] + objects
    out = run(cmd, cwd=fake, capture_output=True).stdout
    # "shlibs:Depends=libc6 (>= 2.28), libgcc-s1 (>= 4.2), ..."
    for line in out.splitlines():
        if line.startswith("shlibs:Depends="):
            return line.split("=", 1)[1].strip()
    return ""


def write_debian_dir(stage: str, version: str, arch: str, depends: str) -> None:
    debian = os.path.join(stage, "DEBIAN")
    os.makedirs(debian)
    size = installed_size_kib(stage)
    with open(os.path.join(HERE, "debian", "control.in"), encoding="utf-8") as fh:
        control = fh.read()
    control = (
        control.replace("@VERSION@", version)
        .replace("@ARCH@", arch)
        .replace("@INSTALLED_SIZE@", str(size))
        .replace("@DEPENDS@", depends)
    )
    with open(os.path.join(debian, "control"), "w", encoding="utf-8") as fh:
        fh.write(control)
    with open(os.path.join(debian, "conffiles"), "w", encoding="utf-8") as fh:
        fh.write(CONFFILE + "\n")
    sums = []
    for dirpath, dirnames, filenames in os.walk(stage):
        if dirpath == stage:
            dirnames.remove("DEBIAN")
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, stage)
            if os.path.islink(path) or "/" + rel == CONFFILE:
                continue
            with open(path, "rb") as fh:
                sums.append(f"{hashlib.md5(fh.read()).hexdigest()}  {rel}")
    with open(os.path.join(debian, "md5sums"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(sorted(sums, key=lambda s: s[34:])) + "\n")
    for name in ("control", "conffiles", "md5sums"):
        os.chmod(os.path.join(debian, name), 0o644)
    for script in ("postinst", "prerm", "postrm"):
        install_file(os.path.join(HERE, "debian", script), os.path.join(debian, script), 0o755)
    os.chmod(debian, 0o755)


# ---------------------------------------------------------------- main


def valid_version(version: str) -> bool:
    """A native Debian version as dpkg accepts it (no epoch, no revision: the package is native)."""
    return bool(re.fullmatch(r"[0-9][A-Za-z0-9.+~]*", version))


def build(out_dir: str, wheelhouse: str, version: str | None = None) -> str:
    """Builds the .deb into OUT_DIR; VERSION overrides agent.__version__ as the package's version
    (for tests that need a higher version to upgrade to) and gets a changelog entry in the build
    directory only."""
    started = time.monotonic()
    arch = debian_arch()
    if version is not None and not valid_version(version):
        raise BuildError(f"--version {version!r} is not a native Debian version (digits, letters, . + ~)")
    os.makedirs(out_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="stage-", dir=out_dir)
    try:
        if version is None or version == project_version():
            version = project_version()
            changelog = changelog_checked(version)
        else:
            changelog = changelog_with_entry(version, work)
        stage = os.path.join(work, "root")
        os.makedirs(stage)
        venv, xy = build_venv(stage, work, wheelhouse)
        log("installing the rest of the tree")
        install_tree(stage, venv, changelog)
        strip_objects(stage)
        normalize_modes(stage)
        depends = [f"python{xy}", "python3 (>= 3.11)", "passwd"]
        libc = libc_dependency(stage, work)
        if libc:
            depends.append(libc)
        write_debian_dir(stage, version, arch, ", ".join(depends))
        log("dpkg-deb --build")
        deb = os.path.join(out_dir, f"{PACKAGE}_{version}_{arch}.deb")
        if os.path.exists(deb):
            os.remove(deb)
        run(["dpkg-deb", "--root-owner-group", "-Zxz", "-z6", "--build", stage, deb], capture_output=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"built {deb} in {time.monotonic() - started:.1f} s")
    return deb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the eventsink-agent .deb from this work tree.")
    parser.add_argument("--out", default=os.path.join(HERE, "build"), help="output directory (default packaging/build)")
    parser.add_argument(
        "--wheelhouse",
        default=os.path.join(HERE, "build", "wheelhouse"),
        help="cache of dependency wheels (default packaging/build/wheelhouse)",
    )
    parser.add_argument(
        "--version",
        dest="package_version",
        metavar="VERSION",
        help="package version instead of agent.__version__ (e.g. a higher one to test an upgrade "
        "with); its changelog entry is written into the build directory, never into "
        "packaging/debian/changelog",
    )
    args = parser.parse_args(argv)
    try:
        print(build(os.path.abspath(args.out), os.path.abspath(args.wheelhouse), args.package_version))
    except BuildError as exc:
        print(f"build_deb: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
