"""sd_notify without systemd: real datagram sockets, on a path and in the abstract namespace."""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bhogad.service.notify import Notifier, notify_address, watchdog_period


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(2.0)
    with sock:
        yield sock, path


def fields(datagram: bytes) -> dict[str, str]:
    assert datagram.endswith(b"\n")
    return dict(line.split("=", 1) for line in datagram.decode().splitlines())


def test_ready_status_and_stopping_arrive_as_key_value_lines(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    n = Notifier.from_environ({"NOTIFY_SOCKET": path})
    assert n.ready("serving on /x") and n.stopping("bye")
    assert fields(sock.recv(4096)) == {"READY": "1", "STATUS": "serving on /x"}
    assert fields(sock.recv(4096)) == {"STOPPING": "1", "STATUS": "bye"}


def test_reloading_carries_the_monotonic_clock(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    before = time.monotonic_ns() // 1000
    Notifier.from_environ({"NOTIFY_SOCKET": path}).reloading()
    got = fields(sock.recv(4096))
    after = time.monotonic_ns() // 1000
    assert got["RELOADING"] == "1"
    assert before <= int(got["MONOTONIC_USEC"]) <= after


def test_a_newline_in_status_cannot_inject_a_second_assignment(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    Notifier(path, None).status("ok\nREADY=1")
    assert fields(sock.recv(4096)) == {"STATUS": "ok READY=1"}


@pytest.mark.skipif(sys.platform != "linux", reason="the abstract namespace is Linux-only")
def test_abstract_namespace_address() -> None:
    name = f"bhoga-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2.0)
        assert Notifier.from_environ({"NOTIFY_SOCKET": "@" + name}).watchdog()
        assert fields(sock.recv(4096)) == {"WATCHDOG": "1"}


def test_without_notify_socket_everything_is_a_quiet_no_op() -> None:
    n = Notifier.from_environ({})
    assert not n.enabled
    assert not n.ready() and not n.stopping() and not n.watchdog() and not n.reloading()
    assert n.watchdog_s is None


def test_a_receiver_that_went_away_is_ignored(tmp_path: Path) -> None:
    assert not Notifier(str(tmp_path / "gone"), None).ready()


def test_addresses() -> None:
    assert notify_address("/run/user/1/systemd/notify") == "/run/user/1/systemd/notify"
    assert notify_address("@abstract") == "\0abstract"
    assert notify_address("vsock:2:1234") is None
    assert notify_address("") is None
    assert notify_address(None) is None


def test_watchdog_period_is_half_the_interval_and_only_for_our_pid() -> None:
    me = os.getpid()
    assert watchdog_period("30000000", None, me) == 15.0
    assert watchdog_period("30000000", str(me), me) == 15.0
    assert watchdog_period("30000000", str(me + 1), me) is None
    assert watchdog_period(None, None, me) is None
    assert watchdog_period("0", None, me) is None
    assert watchdog_period("soon", None, me) is None


def test_variables_are_read_once_then_removed_so_children_do_not_inherit_them(tmp_path: Path) -> None:
    env = {"NOTIFY_SOCKET": str(tmp_path / "n"), "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    n = Notifier.from_environ(env)
    assert env == {}
    assert n.watchdog_s == 1.0


def test_no_watchdog_without_a_socket_to_ping() -> None:
    assert Notifier.from_environ({"WATCHDOG_USEC": "2000000"}).watchdog_s is None
