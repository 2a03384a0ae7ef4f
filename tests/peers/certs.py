"""A throwaway certificate authority for TLS tests, made at test time with trustme.

Strategy: one CA per session (the ``tls_ca`` fixture); leaf certificates are issued per
host-name set and cached, because RSA key generation is the slow part. The CA certificate
and leaf files are written to a private temporary directory so that file-based consumers
(``verify="path"``, curl ``--cacert``, nginx ``ssl_certificate``) can use them too.
"""

from __future__ import annotations

import shutil
import ssl
import tempfile
from pathlib import Path

import pytest
import trustme

__all__ = ["TestCA", "make_ca", "tls_ca"]


class TestCA:
    __test__ = False  # not a pytest test class despite the name

    def __init__(self) -> None:
        self._ca = trustme.CA()
        self.directory = Path(tempfile.mkdtemp(prefix="restiming-ca-"))
        self.ca_file = str(self.directory / "ca.pem")
        self._ca.cert_pem.write_to_path(self.ca_file)
        self._leaves: dict[tuple[str, ...], trustme.LeafCert] = {}

    def _leaf(self, hostnames: tuple[str, ...]) -> trustme.LeafCert:
        hostnames = tuple(hostnames)
        if hostnames not in self._leaves:
            self._leaves[hostnames] = self._ca.issue_cert(*hostnames)
        return self._leaves[hostnames]

    def server_context(self, hostnames=("127.0.0.1", "localhost")) -> ssl.SSLContext:
        """A server-side context presenting a leaf for ``hostnames`` (IPs become IP SANs)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._leaf(hostnames).configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts this CA only."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        return context

    def cert_files(self, hostnames=("127.0.0.1", "localhost")) -> tuple[str, str]:
        """``(certificate chain path, private key path)`` for servers configured by file."""
        leaf = self._leaf(hostnames)
        name = "-".join(hostnames).replace(":", "_")
        cert, key = self.directory / f"{name}.crt", self.directory / f"{name}.key"
        leaf.private_key_pem.write_to_path(str(key))
        with open(cert, "wb") as out:
            for blob in leaf.cert_chain_pems:
                out.write(blob.bytes())
        return str(cert), str(key)

    def cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def make_ca() -> TestCA:
    return TestCA()


@pytest.fixture(scope="session")
def tls_ca():
    """One throwaway CA for the whole session."""
    ca = make_ca()
    yield ca
    ca.cleanup()
