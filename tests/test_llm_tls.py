"""Clients share one TLS context per process (loading the CA bundle costs ~20 ms a client, and a cycle
builds dozens), and it still verifies: an endpoint whose certificate nobody vouches for is refused,
and the CA bundle named by SSL_CERT_FILE is trusted, also when it is set after the first client."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import openai
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from flywheel.config import load_settings
from flywheel.llm import make_async_client, make_client, tls_context


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flywheel test endpoint")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class _Models(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"object": "list", "data": [{"id": "m", "object": "model", "owned_by": "t"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def https_endpoint(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert, key = _self_signed(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Models)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/v1", cert
    finally:
        server.shutdown()
        server.server_close()


def test_clients_share_one_verifying_context_and_trust_the_bundle_the_environment_names(
    https_endpoint: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, cert = https_endpoint
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    settings = load_settings(openai_base_url=url, llm_max_retries=0)
    shared = tls_context()
    assert tls_context() is shared  # built once
    assert (shared.verify_mode, shared.check_hostname) == (ssl.CERT_REQUIRED, True)
    make_client(settings).close()
    make_async_client(settings)
    assert tls_context() is shared

    with make_client(settings) as client, pytest.raises(openai.APIConnectionError):
        client.models.list()  # nobody vouches for the endpoint's certificate

    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    assert tls_context() is not shared
    with make_client(settings) as client:
        assert [m.id for m in client.models.list()] == ["m"]
