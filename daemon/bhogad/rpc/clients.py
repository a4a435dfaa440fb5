"""The connected clients, and fan-out of ``quota.changed`` events to those that subscribed.

The state owner hands over :class:`QuotaChanged` values and never sees wire bytes; each event is
encoded here once, whatever the number of subscribers. The server adds and removes connections; the
method table reads the counts and subscribes callers. Built first, so nothing needs patching later.
"""

from __future__ import annotations

from typing import Any, Protocol

from bhoga import codec
from bhoga.protocol import QUOTA_CHANGED, QuotaChanged


class Subscriber(Protocol):
    """A connection that asked for events. ``offer`` must never block (it drops and flags lag)."""

    subscribed: bool

    def offer(self, line: bytes) -> None: ...


class Clients:
    def __init__(self) -> None:
        #: Every open connection (the server's own set: it adds on accept, removes on close).
        self.connections: set[Any] = set()
        self.subscribers: set[Subscriber] = set()

    @property
    def connection_count(self) -> int:
        return len(self.connections)

    def __len__(self) -> int:
        """How many are listening for events; the state owner builds none while this is 0."""
        return len(self.subscribers)

    def subscribe(self, conn: Subscriber) -> None:
        conn.subscribed = True
        self.subscribers.add(conn)

    def unsubscribe(self, conn: Subscriber) -> None:
        self.subscribers.discard(conn)

    def publish(self, event: QuotaChanged) -> None:
        line = codec.notification_line(QUOTA_CHANGED, event)
        for subscriber in self.subscribers:
            subscriber.offer(line)
