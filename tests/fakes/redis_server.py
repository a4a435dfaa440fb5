"""A real Redis (or Valkey) server for tests: Debian's ``redis-server`` on a free 127.0.0.1 port, in a
temporary directory, with no persistence. It can be stopped and started again on the same port to
test what daemons do while shared state is unreachable, and after it comes back empty.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

SERVER_BINARIES = ("valkey-server", "redis-server")


def server_binary() -> str | None:
    return next((path for name in SERVER_BINARIES if (path := shutil.which(name))), None)


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def make_tls_files(root: Path) -> TlsFiles:
    """A throwaway certificate authority and a server certificate for 127.0.0.1, made by openssl."""
    root.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(ca=root / "ca.pem", cert=root / "server.pem", key=root / "server.key")
    ca_key = root / "ca.key"
    run = functools.partial(subprocess.run, check=True, capture_output=True)
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=bhoga test CA", "-keyout", str(ca_key), "-out", str(files.ca)])  # fmt: skip
    csr = root / "server.csr"
    run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", str(files.key), "-out", str(csr)])  # fmt: skip
    ext = root / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(files.ca), "-CAkey", str(ca_key),
         "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(files.cert)])  # fmt: skip
    return files


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    def __init__(
        self, root: Path, binary: str, password: str | None = None, tls: TlsFiles | None = None
    ) -> None:
        self.root = root
        self.binary = binary
        self.password = password
        #: With TLS the server listens on ``port`` with TLS only.
        self.tls = tls
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "redis.log").open("ab") as log:  # the child keeps its own copy
            self.proc = self._spawn(log)
        self._wait_ready()

    def _spawn(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                self.binary,
                *self._listen_args(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
                "--protected-mode",
                "yes",
                *(["--requirepass", self.password] if self.password else []),
            ],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )

    def _listen_args(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        return [
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-cert-file", str(self.tls.cert),
            "--tls-key-file", str(self.tls.key),
            "--tls-ca-cert-file", str(self.tls.ca),
            "--tls-auth-clients", "no",
        ]  # fmt: skip

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with contextlib.ExitStack() as stack:
                    s = stack.enter_context(socket.create_connection(("127.0.0.1", self.port), timeout=0.5))
                    if self.tls is not None:
                        context = ssl.create_default_context(cafile=str(self.tls.ca))
                        s = stack.enter_context(context.wrap_socket(s, server_hostname="127.0.0.1"))
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start:\n{(self.root / 'redis.log').read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None
