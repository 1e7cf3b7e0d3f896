"""Throwaway PKI for tests, made with the `openssl` command: a CA, a server
certificate for 127.0.0.1 and a client certificate, both signed by that CA, each
key mode 0600. Tests that need it skip when openssl is not installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Pki:
    ca_cert: str
    ca_key: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def self_signed(directory: str, name: str, *, san: str | None = None, cn: str | None = None) -> tuple[str, str]:
    """(cert, key) of a self-signed P-256 certificate for CN=CN (default NAME), with subjectAltName SAN if given,
    written as NAME.pem and NAME.key in DIRECTORY."""
    cert, key = os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}.key")
    extension = ["-addext", f"subjectAltName={san}"] if san else []
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        key,
        "-out",
        cert,
        "-days",
        "2",
        "-subj",
        f"/CN={cn or name}",
        *extension,
    )
    return cert, key


def new_key_and_cert(directory: str, name: str, ca: tuple[str, str] | None, extension: str = "") -> tuple[str, str]:
    """(cert, key) for CN=NAME: self-signed as a CA when CA is None, else signed by CA (cert, key)."""
    cert, key = os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}.key")
    if ca is None:
        return self_signed(directory, name)
    else:
        csr = os.path.join(directory, f"{name}.csr")
        _openssl(
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            key,
            "-out",
            csr,
            "-subj",
            f"/CN={name}",
        )
        ext = os.path.join(directory, f"{name}.ext")
        with open(ext, "w") as fh:
            fh.write(extension + "\n")
        _openssl(
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca[0],
            "-CAkey",
            ca[1],
            "-CAcreateserial",
            "-out",
            cert,
            "-days",
            "2",
            "-extfile",
            ext,
        )
    os.chmod(key, 0o600)
    return cert, key


def make_pki(directory: str) -> Pki:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    ca = new_key_and_cert(directory, "test-ca", None)
    server = new_key_and_cert(directory, "server", ca, "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth")
    client = new_key_and_cert(directory, "client", ca, "extendedKeyUsage=clientAuth")
    return Pki(ca[0], ca[1], server[0], server[1], client[0], client[1])
