"""The systemd unit: the settings the contract asks for, `systemd-analyze verify`
and an offline `systemd-analyze security` review.

systemd is not PID 1 in CI, but both analyses work offline on a unit file;
`verify` checks that ExecStart= exists, so it runs on the installed unit.
"""

from __future__ import annotations

import os
import shlex

import pytest

from tests.packaging.conftest import PACKAGING, need_tool, sh

UNIT_SOURCE = os.path.join(PACKAGING, "systemd", "eventsink-agent.service")
UNIT_INSTALLED = "/lib/systemd/system/eventsink-agent.service"


def unit_settings(path: str) -> dict[tuple[str, str], list[str]]:
    """(section, key) -> every value given, in order (systemd keys may repeat)."""
    settings: dict[tuple[str, str], list[str]] = {}
    section = ""
    with open(path, encoding="utf-8") as fh:
        for raw in fh:
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                continue
            key, _, value = line.partition("=")
            settings.setdefault((section, key.strip()), []).append(value.strip())
    return settings


REQUIRED = {
    "User": "eventsink-agent",
    "Group": "eventsink-agent",
    "RuntimeDirectory": "eventsink-agent",
    "RuntimeDirectoryMode": "0750",
    "StateDirectory": "eventsink-agent",
    "StateDirectoryMode": "0750",
    "ExecStart": "/usr/bin/eventsink-agent run --config /etc/eventsink-agent/agent.toml",
    "ExecReload": "/bin/kill -HUP $MAINPID",
    "Restart": "on-failure",
    "KillMode": "mixed",
    "TimeoutStopSec": "15",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "CapabilityBoundingSet": "",
}


@pytest.mark.parametrize("key", sorted(REQUIRED))
def test_the_unit_sets(key):
    settings = unit_settings(UNIT_SOURCE)
    assert settings.get(("Service", key)) == [REQUIRED[key]], f"[Service] {key}= should be exactly {REQUIRED[key]!r}"


def test_the_unit_writes_nowhere_but_its_own_directories_and_is_wanted_at_boot():
    settings = unit_settings(UNIT_SOURCE)
    assert ("Service", "ReadWritePaths") not in settings, (
        "state/runtime are writable via StateDirectory=/RuntimeDirectory="
    )
    assert settings[("Service", "UMask")] == ["0027"]
    assert settings[("Install", "WantedBy")] == ["multi-user.target"]
    assert shlex.split(settings[("Service", "ExecStart")][0])[0] == "/usr/bin/eventsink-agent"


def test_systemd_analyze_verify_accepts_the_installed_unit(installed):
    need_tool("systemd-analyze", "systemd")
    proc = sh(["systemd-analyze", "verify", "--man=no", UNIT_INSTALLED], check=False)
    # verify exits 0 even for unknown keys; anything it prints is a finding.
    assert proc.returncode == 0 and not proc.stderr.strip() and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_systemd_analyze_security_rates_the_unit_well_hardened(installed):
    need_tool("systemd-analyze", "systemd")
    # Exposure 0.0 (locked down) .. 10.0 (unprotected); threshold is in tenths.
    proc = sh(["systemd-analyze", "security", "--offline=yes", "--threshold=20", UNIT_INSTALLED], check=False)
    overall = [line for line in proc.stdout.splitlines() if "Overall exposure level" in line]
    assert proc.returncode == 0, f"exposure above 2.0: {overall}\n{proc.stdout[-3000:]}{proc.stderr}"
    assert overall, proc.stdout[-2000:]
