"""Who holds the answer for a caller: a harness session's provider, or the last answer for a model.

The ranking keeps the holder unless it became ineligible or another candidate is clearly better
(``routing.py``); this module remembers the holders. It is plain state with no clock and no I/O, so
the daemon (``keeper.py``) and the simulation (``bench/simulate.py``) run the same rules.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

import msgspec

from bhogad.config import Config
from bhogad.domain import pricing
from bhogad.domain.routing import Holder

#: Sessions remembered (the least recently active are forgotten first), and the longest session id
#: accepted: harnesses send UUIDs or short names.
MAX_SESSIONS: Final = 4096
MAX_SESSION_LEN: Final = 256
_MAX_MODELS: Final = 1024
#: How long a provider keeps a prompt cache after its last use (Anthropic's default; OpenAI's is
#: similar). A session idle longer has nothing cached left to lose by moving.
CACHE_TTL: Final = timedelta(minutes=5)


class SessionRoute(msgspec.Struct, kw_only=True):
    """Where a harness session is now, so its next call can stay there and keep its prompt cache."""

    provider: str
    model: str
    at: datetime
    #: Tokens of prompt the provider holds cached for it (its last call's cache reads and writes).
    cached_tokens: int = 0


class Affinity:
    """Session routes and last answers. In memory only: a prompt cache barely outlives a restart."""

    def __init__(self) -> None:
        self.sessions: dict[str, SessionRoute] = {}
        self.last_answer: dict[str, str] = {}

    def holder(
        self, cfg: Config, model: str, session: str | None, now: datetime
    ) -> tuple[Holder | None, datetime | None]:
        """Who holds the answer for this caller, and until when: the session's provider while the
        session is active, else the last answer for the model (with no end)."""
        route = self.sessions.get(session) if session is not None else None
        if route is not None:
            until = route.at + timedelta(seconds=cfg.routing.session_idle_s)
            if now < until:
                cached = route.cached_tokens if now - route.at <= CACHE_TTL else 0
                cost = pricing.cache_loss(route.model, cached, overrides=cfg.pricing)
                return Holder(route.provider, f"session {session}", cost, explain=True), until
        last = self.last_answer.get(model)
        return (Holder(last, "the last answer") if last is not None else None), None

    def answered(self, model: str, session: str | None, provider: str | None, now: datetime) -> None:
        """The caller was told to use ``provider`` (``None``: nothing could serve)."""
        if provider is None:
            return
        if session is None:
            if len(self.last_answer) >= _MAX_MODELS and model not in self.last_answer:
                self.last_answer.clear()
            self.last_answer[model] = provider
            return
        route = self.sessions.get(session)
        # The harness is about to call the provider it was given: its cache there is what it
        # already had if it stayed, none if it moved.
        cached = route.cached_tokens if route is not None and route.provider == provider else 0
        self._note(session, SessionRoute(provider=provider, model=model, at=now, cached_tokens=cached))

    def called(
        self, session: str | None, provider: str, model: str, at: datetime, ok: bool, cached_tokens: int
    ) -> None:
        """A harness reported a call of its session (a success leaves a prompt cache there)."""
        if session is None or not ok or len(session) > MAX_SESSION_LEN:
            return
        held = self.sessions.get(session)
        if held is None or held.at <= at:
            self._note(
                session, SessionRoute(provider=provider, model=model, at=at, cached_tokens=cached_tokens)
            )

    def _note(self, session: str, route: SessionRoute) -> None:
        self.sessions.pop(session, None)  # re-inserted last: the dict stays least recently active first
        self.sessions[session] = route
        while len(self.sessions) > MAX_SESSIONS:
            del self.sessions[next(iter(self.sessions))]
