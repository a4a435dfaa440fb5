"""Taking a socket from LISTEN_FDS: what is accepted, what is refused, and that the variables go.

Descriptors passed by systemd always start at 3, so the cases that hand one over run in a child
process with the socket placed at fd 3, as systemd places it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bhogad.service.listen import LAUNCHD_LABEL, ActivationError, activated, from_systemd

CHILD = """\
import os, socket, sys
from bhogad.service.listen import ActivationError, from_systemd, socket_path
fds = [int(x) for x in sys.argv[1].split(",")]
for target, fd in enumerate(fds, start=3):
    os.dup2(fd, target)
env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": str(len(fds)), "LISTEN_FDNAMES": sys.argv[2]}
try:
    sock = from_systemd(env, os.getpid())
except ActivationError as exc:
    print("refused:", exc)
else:
    print("fd", sock.fileno(), "path", socket_path(sock), "inheritable", os.get_inheritable(3), "env", env)
"""


def run_child(socks: list[socket.socket], names: str = "") -> str:
    fds = [s.fileno() for s in socks]
    done = subprocess.run(
        [sys.executable, "-c", CHILD, ",".join(map(str, fds)), names],
        pass_fds=fds,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip()


def listening(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(1)
    return s


def test_takes_the_listening_socket_and_clears_the_variables(tmp_path: Path) -> None:
    with listening(tmp_path / "a.sock") as s:
        out = run_child([s])
    assert out == f"fd 3 path {tmp_path / 'a.sock'} inheritable False env {{}}"


def test_picks_the_socket_named_rpc(tmp_path: Path) -> None:
    with listening(tmp_path / "other.sock") as other, listening(tmp_path / "rpc.sock") as rpc:
        out = run_child([other, rpc], "metrics:rpc")
    assert out.startswith(f"fd 4 path {tmp_path / 'rpc.sock'}")


def test_refuses_a_datagram_socket(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(tmp_path / "d.sock"))
        assert "needs a stream socket" in run_child([s])


def test_refuses_a_connected_socket_from_accept_yes() -> None:
    a, b = socket.socketpair()
    with a, b:
        assert "Accept=no" in run_child([a])


def test_refuses_a_tcp_socket() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        assert "refused: systemd passed a AF_INET socket" in run_child([s])


def test_variables_for_another_process_are_ignored_and_removed() -> None:
    env = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "rpc"}
    assert from_systemd(env, os.getpid()) is None
    assert env == {}


def test_no_variables_means_not_activated() -> None:
    assert from_systemd({}, os.getpid()) is None


def test_a_malformed_count_is_an_error_naming_it() -> None:
    with pytest.raises(ActivationError, match="LISTEN_FDS"):
        from_systemd({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "three"}, os.getpid())


@pytest.mark.parametrize(
    ("env", "platform", "expected"),
    [
        ({"LISTEN_PID": "{pid}", "LISTEN_FDS": "1"}, "linux", True),
        ({"LISTEN_PID": "{pid}", "LISTEN_FDS": "0"}, "linux", False),
        ({"LISTEN_PID": "{other}", "LISTEN_FDS": "1"}, "linux", False),
        ({"LISTEN_FDS": "1"}, "linux", False),
        ({}, "linux", False),
        ({"XPC_SERVICE_NAME": LAUNCHD_LABEL}, "darwin", True),
        ({"XPC_SERVICE_NAME": "com.apple.Terminal"}, "darwin", False),
        ({"XPC_SERVICE_NAME": LAUNCHD_LABEL}, "linux", False),
    ],
)
def test_activated_is_judged_without_taking_the_socket(
    env: dict[str, str], platform: str, expected: bool
) -> None:
    pid = os.getpid()
    environ = {k: v.format(pid=pid, other=pid + 1) for k, v in env.items()}
    before = dict(environ)
    assert activated(environ, pid, platform) is expected
    assert environ == before  # from_systemd still finds (and removes) the variables later


def test_the_daemon_knows_the_agents_label() -> None:
    from bhoga.service import units

    assert LAUNCHD_LABEL == units.LABEL
