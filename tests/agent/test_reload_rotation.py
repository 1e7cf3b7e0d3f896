"""Reload sees credentials rotated behind unchanged paths (a new bearer token in
bearer_token_file, renewed client certificate, key or CA files) as a change of the
sink: its worker gets an update; unchanged files change nothing."""

from __future__ import annotations

import os
import shutil

import pytest

from common import config as config_mod
from tests.agent.supervisor_fakes import Rig, config_text
from tests.tls_files import make_pki, new_key_and_cert

OLD_URL = 'url = "http://user:hunter2-pass@127.0.0.1:9/cdr"'


@pytest.fixture
def rig():
    r = Rig()
    pki = make_pki(r.base)
    token = os.path.join(r.base, "cdr.token")
    with open(token, "w") as fh:
        fh.write("token-one\n")
    os.chmod(token, 0o600)
    r.write(
        config_text(r.base).replace(
            OLD_URL,
            f'url = "https://127.0.0.1:9/cdr"\nbearer_token_file = "{token}"\n'
            f'client_cert = "{pki.client_cert}"\nclient_key = "{pki.client_key}"\n'
            f'ca_file = "{pki.ca_cert}"',
        )
    )
    r.sup.config = config_mod.load_or_raise(r.path)
    r.start()
    r.report("cdr", "running")
    r.pki, r.token = pki, token
    yield r
    r.close()


def cdr_in(update: dict) -> dict:
    return next(s for s in update["config"]["sink"] if s["name"] == "cdr")


def test_the_worker_is_given_the_token_and_an_unchanged_reload_changes_nothing(rig):
    assert rig.ask("reload")["changed"] == []
    assert rig.link.to("cdr", "update") == []


def test_a_rotated_bearer_token_is_an_update(rig):
    with open(rig.token, "w") as fh:
        fh.write("token-two\n")
    assert rig.ask("reload")["changed"] == ["cdr"]
    [update] = rig.link.to("cdr", "update")
    assert cdr_in(update)["bearer_token"] == "token-two" and update["announce"] is True
    assert rig.ask("reload")["changed"] == []  # applied once, not on every reload


@pytest.mark.parametrize("which", ["client_cert+client_key", "ca_file"])
def test_renewed_certificate_files_behind_the_same_paths_are_an_update(rig, which):
    renewed = os.path.join(rig.base, "renewed")
    os.mkdir(renewed)
    if which == "ca_file":
        cert, _ = new_key_and_cert(renewed, "test-ca", None)
        shutil.copyfile(cert, rig.pki.ca_cert)
    else:
        cert, key = new_key_and_cert(
            renewed, "client", (rig.pki.ca_cert, rig.pki.ca_key), "extendedKeyUsage=clientAuth"
        )
        shutil.copyfile(cert, rig.pki.client_cert)
        shutil.copyfile(key, rig.pki.client_key)
    assert rig.ask("reload")["changed"] == ["cdr"]
    [update] = rig.link.to("cdr", "update")
    assert cdr_in(update)["client_cert"] == rig.pki.client_cert  # same path, new content
    assert rig.ask("reload")["changed"] == []
