"""A real nginx on loopback as an HTTP/2 TLS front to one pod, configured as an ingress would be.

uvicorn speaks HTTP/1.1; browsers get HTTP/2 from the proxy in front of the pods (ingress-nginx, a Gateway API
implementation). This starts Debian's nginx with a self-signed certificate made here for ``127.0.0.1``, proxying
to the pod with response buffering off (SSE must flow event by event) and long read/send timeouts, and logs each
request with its client connection number, so a test can tell how many connections a browser used.

nginx runs without a master process (one process, this user, no privilege switching), in a private directory,
and is stopped by its PID.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import REQUIRE_BROWSER
from tests.support.processes import free_port, stop_process, wait_for_port

CONFIG = """
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 512; }}
http {{
    log_format fleetcast '$connection $server_protocol "$request" $status';
    access_log {dir}/access.log fleetcast;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; "" ""; }}
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {dir}/cert.pem;
        ssl_certificate_key {dir}/key.pem;
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header X-Forwarded-Proto https;
            proxy_buffering off;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }}
    }}
}}
"""


def nginx_or_skip() -> str:
    """The nginx binary; a skip where it is absent, a failure where CI demands the browser tests."""
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if path is not None:
        return path
    message = "nginx is not installed (Debian: apt-get install nginx)"
    if REQUIRE_BROWSER:
        pytest.fail(message + "; FLEETCAST_REQUIRE_BROWSER=1 demands the browser tests run")
    pytest.skip(message)


def self_signed(directory: Path) -> None:
    """A P-256 key and a certificate for the IP address 127.0.0.1, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
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
        .sign(key, hashes.SHA256())
    )
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


@dataclass
class Nginx:
    port: int
    directory: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def access_log(self) -> list[tuple[str, str, str]]:
        """``(connection, protocol, request line)`` of each request nginx has finished."""
        lines = (self.directory / "access.log").read_text().splitlines()
        out = []
        for line in lines:
            connection, protocol, rest = line.split(" ", 2)
            out.append((connection, protocol, rest.rsplit(" ", 1)[0].strip('"')))
        return out


@contextlib.contextmanager
def nginx_h2_front(upstream_port: int) -> Iterator[Nginx]:
    """nginx on a free loopback port: HTTP/2 over TLS in front of ``127.0.0.1:upstream_port``."""
    binary = nginx_or_skip()
    directory = Path(tempfile.mkdtemp(prefix="fleetcast-nginx-"))
    front = Nginx(free_port(), directory)
    proc: subprocess.Popen[bytes] | None = None
    try:
        self_signed(directory)
        config = directory / "nginx.conf"
        config.write_text(CONFIG.format(dir=directory, port=front.port, upstream=upstream_port))
        command = [binary, "-p", str(directory), "-e", str(directory / "error.log"), "-c", str(config)]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(front.port, proc=proc)
        except RuntimeError:
            raise RuntimeError(f"nginx did not start: {(directory / 'error.log').read_text()}") from None
        yield front
    finally:
        if proc is not None:
            stop_process(proc)
        shutil.rmtree(directory, ignore_errors=True)
