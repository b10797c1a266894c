"""Temporal over mTLS by configuration only: Temporal's TEMPORAL_TLS_* variables, nothing else.

The dev server speaks plain gRPC, so the test puts what a self-hosted cluster or Temporal
Cloud has in front of it: a TLS-terminating gRPC proxy (nginx, Debian's package) that demands
a client certificate signed by its CA. A whole engagement runs through it (worker and client
both connected by `q2c.temporal.connect(load_settings())`), and a client without the
certificate is refused at the handshake.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from q2c.cli.main import start
from q2c.domain.stage import EngagementStage
from q2c.settings import load_settings
from q2c.temporal import connect
from sandboxes.common.server import free_port
from tests.deals import create_deal
from tests.engagement_helpers import wait_for_stage
from tests.fixtures.stack import q2c_settings, running_worker

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

pytestmark = pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx not installed (make tls-proxy)")


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(subject: str, key, issuer_key=None, issuer_name=None, *, ca: bool = False, server: bool = False):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


def _pki(folder: Path) -> dict[str, Path]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("q2c test CA", ca_key, ca=True)
    files: dict[str, Path] = {}
    for role in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(f"q2c {role}", key, ca_key, ca.subject, server=role == "server")
        files[f"{role}_cert"] = folder / f"{role}.pem"
        files[f"{role}_key"] = folder / f"{role}.key"
        files[f"{role}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{role}_key"].write_bytes(_pem_key(key))
    files["ca"] = folder / "ca.pem"
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return files


def _nginx_conf(folder: Path, port: int, upstream: str, pki: dict[str, Path]) -> Path:
    temp = folder / "tmp"
    temp.mkdir()
    conf = folder / "nginx.conf"
    conf.write_text(
        f"""
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log info;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {temp}/body;
  proxy_temp_path {temp}/proxy;
  fastcgi_temp_path {temp}/fastcgi;
  uwsgi_temp_path {temp}/uwsgi;
  scgi_temp_path {temp}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl http2;  # nginx 1.22 (Debian 12) spelling
    ssl_certificate {pki["server_cert"]};
    ssl_certificate_key {pki["server_key"]};
    ssl_client_certificate {pki["ca"]};
    ssl_verify_client on;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {{
      grpc_pass grpc://{upstream};
      grpc_read_timeout 300s;   # workers long-poll for ~70 s
      grpc_send_timeout 300s;
      client_max_body_size 0;
    }}
  }}
}}
"""
    )
    return conf


@pytest.fixture
def mtls_proxy(dev_env, tmp_path):
    pki = _pki(tmp_path)
    port = free_port()
    upstream = dev_env.client.service_client.config.target_host
    conf = _nginx_conf(tmp_path, port, upstream, pki)
    proc = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    import socket

    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited: {proc.stderr.read().decode()} {(tmp_path / 'error.log').read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield f"127.0.0.1:{port}", pki
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_an_engagement_runs_through_an_mtls_proxy_by_configuration_only(
    mtls_proxy, monkeypatch, crm_sandbox, erp_sandbox, psa_sandbox, tmp_path
):
    address, pki = mtls_proxy
    monkeypatch.setenv("TEMPORAL_ADDRESS", address)
    monkeypatch.setenv("TEMPORAL_TLS", "true")
    monkeypatch.setenv("TEMPORAL_TLS_SERVER_CA_CERT_PATH", str(pki["ca"]))
    monkeypatch.setenv("TEMPORAL_TLS_SERVER_NAME", "localhost")
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", str(pki["client_cert"]))
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_KEY_PATH", str(pki["client_key"]))

    configured = load_settings()
    assert configured.temporal_address == address and "tls" in configured.temporal_connect
    settings = q2c_settings(
        crm_url=crm_sandbox.url,
        erp_url=erp_sandbox.url,
        psa_url=psa_sandbox.url,
        state_dir=tmp_path / "state",
        temporal_address=address,
    )
    assert settings.temporal_connect == configured.temporal_connect
    client = await connect(settings)
    async with running_worker(client, settings):
        async with crm_sandbox.client() as crm:
            deal = await create_deal(crm)
        await start(client, deal.opportunity_id, task_queue=settings.task_queue)
        status = await wait_for_stage(client, deal.opportunity_id, EngagementStage.ACTIVE)
    assert status.erp_project_id

    # the same proxy without a client certificate: refused
    monkeypatch.delenv("TEMPORAL_TLS_CLIENT_CERT_PATH")
    monkeypatch.delenv("TEMPORAL_TLS_CLIENT_KEY_PATH")
    no_cert = load_settings()
    with pytest.raises(Exception) as refused:
        await asyncio.wait_for(connect(no_cert), 20)
    # nginx answers a TLS client without a certificate with its HTML "400 No required SSL
    # certificate was sent" page; the request never reaches Temporal
    assert "400 Bad Request" in str(refused.value)
    assert "client sent no required SSL certificate" in (Path(str(pki["ca"])).parent / "error.log").read_text()
