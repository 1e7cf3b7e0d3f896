"""The .deb as built: name, control fields, contents, relocation of the venv, lintian."""

from __future__ import annotations

import ast
import hashlib
import os
import re
import subprocess

import pytest

from tests.packaging.conftest import PACKAGING, REPO, need_tool, sh

VENV = "opt/eventsink-agent"


def project_version() -> str:
    with open(os.path.join(REPO, "common", "__init__.py"), encoding="utf-8") as fh:
        for node in ast.parse(fh.read()).body:
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "__version__":
                return ast.literal_eval(node.value)
    raise AssertionError("common/__init__.py has no __version__")


@pytest.fixture(scope="module")
def extracted(deb_path, tmp_path_factory) -> str:
    """The package unpacked with its DEBIAN/ directory (dpkg-deb -R)."""
    root = str(tmp_path_factory.mktemp("unpacked") / "root")
    sh(["dpkg-deb", "--raw-extract", deb_path, root])
    return root


def venv_interpreter(bin_dir: str) -> str:
    """The absolute interpreter path that the venv's bin/python3 link chain ends at."""
    name = "python3"
    for _ in range(5):
        target = os.readlink(os.path.join(bin_dir, name))
        if os.path.isabs(target):
            return target
        name = target
    raise AssertionError(f"{bin_dir}/python3 is not a short chain of links to an absolute path")


def control_fields(deb: str) -> dict[str, str]:
    out = sh(["dpkg-deb", "--field", deb]).stdout
    fields: dict[str, str] = {}
    key = ""
    for line in out.splitlines():
        if line[:1] in (" ", "\t") and key:
            fields[key] += "\n" + line
        elif ":" in line:
            key, value = line.split(":", 1)
            fields[key] = value.strip()
    return fields


def test_the_deb_is_named_after_the_project_version_and_the_debian_architecture(deb_path):
    arch = sh(["dpkg", "--print-architecture"]).stdout.strip()
    assert os.path.basename(deb_path) == f"eventsink-agent_{project_version()}_{arch}.deb"


def test_control_names_the_package_its_version_and_what_a_node_needs(deb_path):
    fields = control_fields(deb_path)
    assert fields["Package"] == "eventsink-agent"
    assert fields["Version"] == project_version()
    assert fields["Architecture"] == sh(["dpkg", "--print-architecture"]).stdout.strip()
    depends = [d.strip() for d in fields["Depends"].split(",")]
    assert "python3 (>= 3.11)" in depends
    # The venv's interpreter links name /usr/bin/python3.X: that exact package must stay installed.
    assert any(re.fullmatch(r"python3\.\d+", d) for d in depends), depends
    assert "passwd" in depends  # useradd/groupadd in postinst
    assert any(d.startswith("libc6 (>= ") for d in depends), "compiled wheels need a libc6 dependency"
    assert int(fields["Installed-Size"]) > 1000
    assert fields["Maintainer"] and fields["Description"]


def test_the_package_holds_the_commands_config_unit_docs_and_man_pages(extracted):
    expected_files = [
        "etc/eventsink-agent/agent.toml",
        "lib/systemd/system/eventsink-agent.service",
        f"{VENV}/pyvenv.cfg",
        f"{VENV}/bin/eventsink-agent",
        f"{VENV}/bin/eventsinkctl",
        "usr/share/doc/eventsink-agent/copyright",
        "usr/share/doc/eventsink-agent/changelog.Debian.gz",
        "usr/share/doc/eventsink-agent/README.Debian",
        "usr/share/doc/eventsink-agent/examples/prometheus/eventsink-agent.rules.yml",
        "usr/share/doc/eventsink-agent/examples/prometheus/eventsink-agent.dashboard.json",
        "usr/share/man/man1/eventsink-agent.1.gz",
        "usr/share/man/man1/eventsinkctl.1.gz",
        "usr/share/lintian/overrides/eventsink-agent",
        "DEBIAN/control",
        "DEBIAN/conffiles",
        "DEBIAN/md5sums",
        "DEBIAN/postinst",
        "DEBIAN/prerm",
        "DEBIAN/postrm",
    ]
    missing = [p for p in expected_files if not os.path.isfile(os.path.join(extracted, p))]
    assert not missing, f"missing from the package: {missing}"
    # the console's templates and static files are package data: the wheel must carry them
    console = [
        os.path.relpath(os.path.join(d, f), extracted)
        for d, _, files in os.walk(extracted)
        for f in files
        if "/console/" in os.path.join(d, f)
    ]
    for name in ("templates/sinks.html", "templates/login.html", "static/console.js", "static/console.css"):
        assert any(path.endswith(f"site-packages/console/{name}") for path in console), f"no console/{name}"
    # `receive` and `demo` are commands of the package: tools/ ships, with the live page's assets (package data)
    shipped = [
        os.path.join(d, f) for d, _, files in os.walk(extracted) for f in files if "/tools/" in os.path.join(d, f)
    ]
    for name in ("receive_command.py", "demo.py", "receiver_web_assets/page.html", "receiver_web_assets/receiver.js"):
        assert any(path.endswith(f"site-packages/tools/{name}") for path in shipped), f"no tools/{name}"
    for cmd in ("eventsink-agent", "eventsinkctl"):
        link = os.path.join(extracted, "usr", "bin", cmd)
        assert os.path.islink(link) and os.readlink(link) == f"/{VENV}/bin/{cmd}"
    for script in ("postinst", "prerm", "postrm"):
        path = os.path.join(extracted, "DEBIAN", script)
        assert os.stat(path).st_mode & 0o777 == 0o755, script
        sh(["sh", "-n", path])  # parses with dash, Debian's /bin/sh
    with open(os.path.join(extracted, "DEBIAN", "conffiles"), encoding="utf-8") as fh:
        assert fh.read().split() == ["/etc/eventsink-agent/agent.toml"]


def test_the_venv_is_relocated_to_opt_and_uses_debians_python(extracted, deb_path):
    venv = os.path.join(extracted, VENV)
    # eventsinkctl's launcher starts Python isolated and without site (packaging/deb_launcher.py)
    for cmd, flags in (("eventsink-agent", ""), ("eventsinkctl", " -IS")):
        with open(os.path.join(venv, "bin", cmd), encoding="utf-8") as fh:
            assert fh.readline().strip() == f"#!/{VENV}/bin/python3{flags}"
    assert re.fullmatch(r"/usr/bin/python3\.\d+", venv_interpreter(os.path.join(venv, "bin")))
    with open(os.path.join(venv, "pyvenv.cfg"), encoding="utf-8") as fh:
        cfg = dict(line.split(" = ", 1) for line in fh.read().splitlines() if " = " in line)
    assert cfg["home"] == "/usr/bin"
    assert cfg["include-system-site-packages"] == "false"
    # Nothing in the package may still name the staging tree it was built in.
    build_dir = os.path.dirname(deb_path).encode()
    offenders = []
    for dirpath, _, filenames in os.walk(extracted):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                if "stage-" in os.readlink(path):
                    offenders.append(path)
                continue
            with open(path, "rb") as fh:
                data = fh.read()
            if build_dir in data or b"/root/opt/eventsink-agent" in data:
                offenders.append(os.path.relpath(path, extracted))
    assert not offenders, f"files naming the build's staging path: {offenders[:10]}"


def test_no_byte_code_pip_or_foreign_console_scripts_ship(extracted):
    venv = os.path.join(extracted, VENV)
    pyc = [
        os.path.join(d, f)
        for d, dirs, files in os.walk(extracted)
        for f in files + dirs
        if f.endswith(".pyc") or f == "__pycache__"
    ]
    assert not pyc, pyc[:5]
    interpreter = os.path.basename(venv_interpreter(os.path.join(venv, "bin")))
    assert set(os.listdir(os.path.join(venv, "bin"))) == {
        "eventsink-agent",
        "eventsinkctl",
        "python",
        "python3",
        interpreter,
    }
    site = [d for d, dirs, _ in os.walk(os.path.join(venv, "lib")) if d.endswith("site-packages")]
    assert len(site) == 1
    dists = {n.split("-")[0].lower() for n in os.listdir(site[0]) if n.endswith(".dist-info")}
    assert {"pyzmq", "orjson", "msgspec", "pycurl", "prometheus_client", "eventsink_agent"} <= dists
    assert not dists & {"requests", "urllib3"}  # the worker speaks HTTP through libcurl only
    assert "pip" not in dists and "setuptools" not in dists


def test_md5sums_match_every_shipped_file_but_the_conffile(extracted):
    sums = {}
    with open(os.path.join(extracted, "DEBIAN", "md5sums"), encoding="utf-8") as fh:
        for line in fh:
            digest, path = line.rstrip("\n").split("  ", 1)
            sums[path] = digest
    shipped = set()
    for dirpath, dirnames, filenames in os.walk(extracted):
        if dirpath == extracted:
            dirnames.remove("DEBIAN")
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                shipped.add(os.path.relpath(path, extracted))
    assert set(sums) == shipped - {"etc/eventsink-agent/agent.toml"}
    for rel, digest in sums.items():
        with open(os.path.join(extracted, rel), "rb") as fh:
            assert hashlib.md5(fh.read()).hexdigest() == digest, rel


def test_copyright_names_every_bundled_distribution(extracted):
    with open(os.path.join(extracted, "usr/share/doc/eventsink-agent/copyright"), encoding="utf-8") as fh:
        text = fh.read()
    assert text.startswith("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/")
    assert "@BUNDLED@" not in text
    canonical = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731 - PEP 503 names, one line
    listed = {(canonical(m.group(1)), m.group(2)) for m in re.finditer(r"^  (\S+) (\S+): \S", text, re.M)}
    site = next(d for d, _, _ in os.walk(os.path.join(extracted, VENV, "lib")) if d.endswith("site-packages"))
    for entry in os.listdir(site):
        if entry.endswith(".dist-info"):
            name, version = entry[: -len(".dist-info")].rsplit("-", 1)
            assert (canonical(name), version) in listed, f"{name} {version} is not listed in the copyright file"
    # The native libraries inside the pycurl wheel (libcurl, OpenSSL, nghttp2, ...) have a stanza of their own.
    libs = os.path.join(site, "pycurl.libs")
    assert os.path.isdir(libs) and any(n.startswith("libcurl") for n in os.listdir(libs))
    assert "pycurl.libs/*" in text and "libcurl (the curl license" in text and "OpenSSL" in text


def test_the_shipped_example_config_passes_check(extracted):
    proc = subprocess.run(
        [
            os.path.join(REPO, ".venv", "bin", "python"),
            "-m",
            "agent",
            "check",
            "--config",
            os.path.join(extracted, "etc/eventsink-agent/agent.toml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_lintian_reports_no_errors(deb_path):
    need_tool("lintian", "lintian")
    # Overrides ship inside the package (/usr/share/lintian/overrides/eventsink-agent),
    # each with its reason; no --suppress-tags here.
    proc = sh(["lintian", "--no-tag-display-limit", "--fail-on", "error", deb_path], check=False, timeout=180)
    errors = [line for line in proc.stdout.splitlines() if line.startswith("E:")]
    assert not errors and proc.returncode == 0, "lintian errors:\n" + "\n".join(errors) + proc.stderr
    with open(os.path.join(PACKAGING, "debian", "lintian-overrides"), encoding="utf-8") as fh:
        overrides = [line for line in fh if line.strip() and not line.startswith("#")]
    assert len(overrides) <= 3, "keep lintian overrides few, each justified by a comment"


@pytest.mark.parametrize(
    "command, subcommands",
    [
        ("eventsink-agent", ["run", "check", "schema", "demo", "receive", "import-pexip", "console-password"]),
        (
            "eventsinkctl",
            [
                "status",
                "alarms",
                "restart",
                "reload",
                "replay",
                "attempts",
                "dead-letters",
                "redrive",
                "discard",
                "deliveries",
            ],
        ),
    ],
)
def test_the_man_page_documents_every_command_and_option_of_the_help(command, subcommands):
    with open(os.path.join(PACKAGING, "man", f"{command}.1"), encoding="utf-8") as fh:
        page = fh.read().replace("\\-", "-")
    helps = []
    for sub in [None, *subcommands]:
        argv = [os.path.join(REPO, ".venv", "bin", command)] + ([sub] if sub else []) + ["--help"]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr
        helps.append(proc.stdout)
    options = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", "\n".join(helps))) - {"--help"}
    undocumented = sorted(o for o in options if o not in page)
    assert not undocumented, f"{command}(1) does not mention {undocumented}"
    for sub in subcommands:
        assert re.search(rf"^\.BI? {sub}\b", page, re.M), f"{command}(1) has no section for {sub}"


def test_the_shipped_agent_toml_has_the_console_commented_out_with_its_defaults():
    """The console is off in the shipped config: its section is there, every key commented out."""
    import tomllib

    from common import config as cfg
    from common.config_types import ConsoleConfig

    with open(os.path.join(PACKAGING, "etc", "agent.toml"), encoding="utf-8") as fh:
        text = fh.read()
    assert "\n[console]" not in text and "\n#[console]\n" in text
    defaults = ConsoleConfig()
    for key in ("listen", "password_file", "tls_cert", "tls_key", "session_hours"):
        [line] = [x for x in text.splitlines() if x.startswith(f"#{key} = ")]
        assert tomllib.loads(line[1:].split("#", 1)[0])[key] == getattr(defaults, key), line
    shipped = cfg.parse(text)
    assert shipped.problems == [] and shipped.config.console.listen == ""
