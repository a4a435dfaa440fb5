"""The blocking client: ``bhoga.Router``, the library's API over the daemon's socket.

One connection per Router, reused for every call and guarded by a lock (thread-safe). After ``fork``
the child opens its own connection. When the daemon restarts, the next call reconnects; calls that are
safe to repeat are retried once on the new connection.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import weakref
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from bhoga import codec, paths
from bhoga.errors import ClientTimeout, DaemonNotRunning, ProtocolError, RemoteError, remote_error
from bhoga.protocol import (
    MAX_REPLY_BYTES,
    PROTOCOL_VERSION,
    DaemonStatus,
    Hello,
    Method,
    ProviderQuota,
    Ranking,
    RouterRecommendation,
    StoredTurn,
    TurnAck,
    UsageSummary,
)

log = logging.getLogger("bhoga")

T = TypeVar("T")

#: Methods that change nothing (or set the same value again), so a retry after a reconnect is safe.
IDEMPOTENT = frozenset(
    {
        Method.HELLO,
        Method.STATUS,
        Method.METRICS,
        Method.BEST_FOR,
        Method.RANK,
        Method.LIST_QUOTAS,
        Method.LIST_TURNS,
        Method.SET_QUOTA,
        Method.USAGE_SUMMARY,
        Method.REFRESH,
    }
)

_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def decode_result(raw: msgspec.Raw | bytes, result_type: Any) -> Any:
    decoder = _decoders.get(result_type)
    if decoder is None:
        decoder = _decoders[result_type] = msgspec.json.Decoder(result_type)
    return decoder.decode(raw)


def result_of(line: bytes, request_id: int, result_type: Any) -> Any:
    """Interpret one reply line, sans I/O: the decoded result, or an exception.

    ``ProtocolError`` means the stream can no longer be trusted and the caller must drop the
    connection; a ``RemoteError`` marked ``unsolicited`` also ends it (the daemon closes after it).
    """
    try:
        reply = codec.decode_response(line)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"not a JSON-RPC reply: {exc}") from None
    if reply.error is not msgspec.UNSET:
        err = reply.error
        error = remote_error(err.code, err.message, err.data if err.data is not msgspec.UNSET else None)
        error.unsolicited = reply.id is None
        raise error
    if reply.id != request_id:
        raise ProtocolError(f"reply id {reply.id!r} does not match request id {request_id}")
    if reply.result is msgspec.UNSET:
        raise ProtocolError("reply has neither result nor error")
    return decode_result(reply.result, result_type)


def turn_params(
    pid: str,
    model: str,
    input_tokens: int,
    output_tokens: int,
    headers: dict[str, str] | None,
    status_code: int,
    **extra: Any,
) -> dict[str, Any]:
    """The ``turns.record`` params; only the names of headers and their values go, never a body."""
    params: dict[str, Any] = {
        "provider": pid,
        "model": model,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "status_code": status_code,
    }
    if headers:
        # Harnesses pass whatever their HTTP library has (httpx, requests, dicts with odd casing or
        # non-str values); the daemon wants plain strings. Authorization never belongs in a report.
        params["headers"] = {
            str(k): str(v)
            for k, v in dict(headers).items()
            if v is not None and str(k).lower() != "authorization"
        }
    # Zero counts are the default and need not travel; a reported cost of zero (a free model) must.
    params.update({k: v for k, v in extra.items() if v is not None and (v != 0 or k == "cost_usd")})
    return params


def model_params(model: str, agent: str | None, session: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"model": model}
    if agent is not None:
        params["agent"] = agent
    if session is not None:
        params["session"] = session
    return params


def set_quota_params(
    pid: str, pct_remaining: float, weekly_pct: float | None, model: str, resets_at: datetime | None
) -> dict[str, Any]:
    params: dict[str, Any] = {"provider": pid, "pct_remaining": pct_remaining, "model": model}
    if weekly_pct is not None:
        params["weekly_pct"] = weekly_pct
    if resets_at is not None:
        params["resets_at"] = resets_at
    return params


def turns_params(after_id: int, limit: int, session: str | None, agent: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {"after_id": after_id, "limit": limit}
    if session is not None:
        params["session"] = session
    if agent is not None:
        params["agent"] = agent
    return params


def usage_params(
    period: str | None, since: datetime | None, until: datetime | None, group_by: str | list[str]
) -> dict[str, Any]:
    params: dict[str, Any] = {"group_by": [group_by] if isinstance(group_by, str) else list(group_by)}
    if period is not None:
        params["period"] = period
    if since is not None:
        params["since"] = since
    if until is not None:
        params["until"] = until
    return params


_live: weakref.WeakSet[Router] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A lock held by another thread at fork time would stay held forever in the child.
    for router in list(_live):
        router._reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Router:
    """Ask the daemon which provider to use, and tell it what each call spent.

    :param socket_path: the daemon's socket; default ``$BHOGA_SOCKET`` or the platform runtime dir.
    :param timeout: seconds to wait for any one reply.
    :param autostart: start ``bhogad`` in the background when it is not running.
    :param state_path: accepted for compatibility with the library; the daemon owns state now.
    :param eager: accepted for compatibility with the library; discovery runs in the daemon.
    """

    def __init__(
        self,
        *,
        socket_path: str | os.PathLike[str] | None = None,
        timeout: float = 10.0,
        autostart: bool = False,
        state_path: Path | None = None,
        eager: bool = True,
    ) -> None:
        self.socket_path = paths.socket_path(socket_path)
        self.timeout = timeout
        self.autostart = autostart
        self.dropped_turns = 0
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._sock: socket.socket | None = None
        self._file: Any = None
        self._pid = os.getpid()
        _live.add(self)

    # -- connection ------------------------------------------------------------------------------

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        if self._sock is not None:
            # Closing our copy of the descriptor leaves the parent's connection untouched.
            self._disconnect()
        self._pid = os.getpid()

    def _connect(self) -> None:
        if os.getpid() != self._pid:
            self._reset_after_fork()
        path = os.fspath(self.socket_path)
        try:
            paths.check_socket_path_length(self.socket_path)
        except ValueError as exc:
            raise DaemonNotRunning(path, str(exc)) from None
        for attempt in itertools.count():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(path)
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                sock.close()
                if not self.autostart or attempt >= 50:
                    raise DaemonNotRunning(path, exc.strerror or "") from None
                if attempt == 0:
                    self._spawn_daemon()
                time.sleep(min(0.02 * 1.5**attempt, 0.25))
                continue
            except PermissionError as exc:
                sock.close()
                raise DaemonNotRunning(path, f"permission denied: {exc.strerror}") from None
            self._sock = sock
            self._file = sock.makefile("rb")
            return

    def _spawn_daemon(self) -> None:
        """Start bhogad detached: a short-lived intermediate starts it in its own session and exits,
        so the daemon is not our child (no zombie when it exits, nothing for us to reap). Several
        starters may race; the daemon's instance lock lets exactly one serve."""
        log.info("starting bhogad for %s", self.socket_path)
        daemon = [sys.executable, "-m", "bhogad", "--socket", os.fspath(self.socket_path)]
        launcher = (
            "import subprocess, sys; "
            "subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, "
            "stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)"
        )
        subprocess.run([sys.executable, "-c", launcher, *daemon], check=False, timeout=30)

    def _disconnect(self) -> None:
        for closable in (self._file, self._sock):
            if closable is not None:
                with contextlib.suppress(OSError):
                    closable.close()
        self._sock = self._file = None

    def close(self) -> None:
        """Close the connection. The Router reconnects if it is used again."""
        with self._lock:
            self._disconnect()

    def __del__(self) -> None:
        # Without this a forgotten Router leaks its socket until the process ends.
        self._disconnect()

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls -----------------------------------------------------------------------------------

    def call(self, method: str, params: Any = None, result_type: Any = Any) -> Any:
        """Send one request and return its decoded result; raise ``RemoteError`` for an error reply."""
        with self._lock:
            for attempt in (0, 1):
                sent = False
                try:
                    if self._sock is None or os.getpid() != self._pid:
                        self._connect()
                    request_id = next(self._ids)
                    line = codec.request_line(
                        method, params if params is not None else msgspec.UNSET, request_id
                    )
                    assert self._sock is not None
                    self._sock.sendall(line)
                    sent = True
                    return self._read_reply(request_id, result_type)
                except (BrokenPipeError, ConnectionResetError, EOFError) as exc:
                    self._disconnect()
                    # Repeat only what is safe to repeat, or what never reached the daemon.
                    if attempt == 0 and (method in IDEMPOTENT or not sent):
                        continue
                    raise ProtocolError(f"connection to bhogad lost during {method}: {exc!r}") from None
                except TimeoutError:
                    self._disconnect()
                    raise ClientTimeout(f"bhogad did not answer {method} within {self.timeout}s") from None
        raise AssertionError("unreachable")

    def _read_reply(self, request_id: int, result_type: Any) -> Any:
        line = self._file.readline(MAX_REPLY_BYTES + 1)
        if not line:
            raise EOFError("daemon closed the connection")
        if not line.endswith(b"\n"):
            self._disconnect()
            raise ProtocolError("reply was cut off or longer than the line limit")
        try:
            return result_of(line, request_id, result_type)
        except ProtocolError:
            self._disconnect()
            raise
        except RemoteError as exc:
            if exc.unsolicited:
                self._disconnect()
            raise

    def notify(self, method: str, params: Any) -> None:
        """Send a notification: no reply, no waiting."""
        line = codec.request_line(method, params, msgspec.UNSET)
        with self._lock:
            for attempt in (0, 1):
                try:
                    if self._sock is None or os.getpid() != self._pid:
                        self._connect()
                    assert self._sock is not None
                    self._sock.sendall(line)
                    return
                except (BrokenPipeError, ConnectionResetError):
                    self._disconnect()
                    if attempt:
                        raise

    # -- the library's API -----------------------------------------------------------------------

    def best_for(
        self, model: str, *, agent: str | None = None, session: str | None = None
    ) -> RouterRecommendation | None:
        """The provider with the most usable quota for ``model`` now, or ``None`` if none can serve it.

        With ``agent``, an agent over its monthly budget is not sent to paid (API-key) providers.
        With ``session``, the session keeps its provider (and its prompt cache) unless it became
        ineligible or another is better by a clear margin; the reason says which.
        """
        params = model_params(model, agent, session)
        result: RouterRecommendation | None = self.call(Method.BEST_FOR, params, RouterRecommendation | None)
        return result

    def rank(self, model: str, *, agent: str | None = None, session: str | None = None) -> Ranking:
        """Every candidate for ``model``, best first, each with the reason it was chosen or rejected."""
        result: Ranking = self.call(Method.RANK, model_params(model, agent, session), Ranking)
        return result

    def record_turn(
        self,
        pid: str,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        headers: dict[str, str] | None = None,
        status_code: int = 200,
        *,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        session: str | None = None,
        agent: str | None = None,
        latency_ms: float | None = None,
        error_body: dict[str, Any] | None = None,
        at: datetime | None = None,
        cost_usd: float | None = None,
        wait: bool = False,
    ) -> int | None:
        """Report one model call. Returns at once; with ``wait=True`` returns the stored turn's id.

        Without ``wait`` a daemon that is not running does not raise into the harness's hot path:
        the turn is counted in ``dropped_turns`` and logged.
        """
        params = turn_params(
            pid,
            model,
            input_tokens,
            output_tokens,
            headers,
            status_code,
            cache_read_tokens=cache_read_tokens,
            cache_write_tokens=cache_write_tokens,
            session=session,
            agent=agent,
            latency_ms=latency_ms,
            error_body=error_body,
            at=at,
            cost_usd=cost_usd,
        )
        if wait:
            ack: TurnAck = self.call(Method.RECORD_TURN, params, TurnAck)
            return ack.id
        try:
            self.notify(Method.RECORD_TURN, params)
        except (DaemonNotRunning, OSError) as exc:
            self.dropped_turns += 1
            log.warning("bhoga: turn for %s not recorded: %s", pid, exc)
        return None

    def set_quota(
        self,
        pid: str,
        pct_remaining: float,
        weekly_pct: float | None = None,
        model: str = "*",
        *,
        resets_at: datetime | None = None,
    ) -> ProviderQuota:
        """Tell the daemon a quota by hand; it holds until a newer reading of the same window arrives.

        :raises InvalidParams: (a ``ValueError``) for a percentage outside 0–100 or an unknown provider.
        """
        params = set_quota_params(pid, pct_remaining, weekly_pct, model, resets_at)
        result: ProviderQuota = self.call(Method.SET_QUOTA, params, ProviderQuota)
        return result

    def quotas(self) -> dict[str, ProviderQuota]:
        """Every provider's quota, keyed ``"<pid>:*"`` as the library keyed them."""
        result: list[ProviderQuota] = self.call(Method.LIST_QUOTAS, {}, list[ProviderQuota])
        return {f"{q.provider_id}:{q.model_id}": q for q in result}

    def refresh(self, provider: str | None = None) -> list[ProviderQuota]:
        """Run discovery now (joining a poll already in flight) and return the fresh quotas."""
        params = {"provider": provider} if provider else {}
        result: list[ProviderQuota] = self.call(Method.REFRESH, params, list[ProviderQuota])
        return result

    # -- more for tools --------------------------------------------------------------------------

    def hello(self) -> Hello:
        result: Hello = self.call(Method.HELLO, {"client": "bhoga", "protocol": PROTOCOL_VERSION}, Hello)
        return result

    def status(self) -> DaemonStatus:
        result: DaemonStatus = self.call(Method.STATUS, None, DaemonStatus)
        return result

    def turns(
        self, after_id: int = 0, limit: int = 1000, session: str | None = None, agent: str | None = None
    ) -> list[StoredTurn]:
        params = turns_params(after_id, limit, session, agent)
        result: list[StoredTurn] = self.call(Method.LIST_TURNS, params, list[StoredTurn])
        return result

    def usage(
        self,
        period: str | None = "today",
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        group_by: str | list[str] = "provider",
    ) -> UsageSummary:
        """Spend and tokens from the ledger: ``period`` is ``today``, ``week``, ``month`` (calendar,
        UTC), ``all`` or rolling ``24h``/``7d``; ``since``/``until`` override it. ``group_by`` is any of
        ``provider``, ``model``, ``agent``, ``session``, ``day``."""
        params = usage_params(period, since, until, group_by)
        result: UsageSummary = self.call(Method.USAGE_SUMMARY, params, UsageSummary)
        return result


def check_quota(pid: str, *, socket_path: str | os.PathLike[str] | None = None) -> ProviderQuota | None:
    """Run one provider's discovery now and return its quota (``None`` if it has none to run)."""
    with Router(socket_path=socket_path) as router:
        found = router.refresh(pid)
    return found[0] if found else None
