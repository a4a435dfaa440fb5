"""What a provider sends back is scrubbed of the credential its request carried, whole or in part,
before the poller lets it reach state, the store, the log or a client."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings, strategies as st

from bhoga.protocol import QuotaWindow, Source, WindowKind
from bhogad.discovery.providers.base import Kind, scrub, scrub_text
from bhogad.domain.state import Availability, PollResult

TOKEN = "sk-ant-oat01-Zq8pL3vW9xR2mK7nB4cT6yH1jF5gD0sA"
NOW = datetime(2026, 9, 24, 12, 0, tzinfo=UTC)


def test_whole_cut_short_and_lower_cased_echoes_are_all_scrubbed() -> None:
    assert scrub_text(f"plan {TOKEN}!", [TOKEN]) == "plan [redacted]!"
    assert scrub_text(f"label: {TOKEN[:40]}", [TOKEN]) == "label: [redacted]"  # truncated by a parser
    assert scrub_text(f"x{TOKEN[15:35]}y", [TOKEN]) == "x[redacted]y"  # a middle piece
    assert scrub_text(TOKEN.lower(), [TOKEN]) == "[redacted]"  # a scope is lower-cased
    assert "Zq8p" not in scrub_text(f"İstanbul {TOKEN}", [TOKEN])
    # Short common runs are not secrets: real words and the token's own prefix alone stay.
    assert scrub_text("weekly/opus sk-ant-oat", [TOKEN]) == "weekly/opus sk-ant-oat"
    plain = "nothing to see"
    assert scrub_text(plain, [TOKEN]) is plain and scrub_text(plain, ["abc"]) is plain


def test_every_string_of_a_poll_result_is_scrubbed_and_clean_ones_stay_the_same_objects() -> None:
    window = QuotaWindow(
        name=f"weekly-{TOKEN[:30]}", scope=TOKEN.lower()[:40], source=Source.OAUTH, kind=WindowKind.QUOTA
    )
    clean = QuotaWindow(name="burst", pct_used=10.0, updated_at=NOW, source=Source.OAUTH)
    outcome = PollResult(
        at=NOW,
        availability=Availability(available=True, reason=f"signed in ({TOKEN})"),
        windows=[clean, window],
        error=f"server said: {TOKEN[5:]}",
        kind=Kind.PROTOCOL,
    )
    out = scrub(outcome, [TOKEN])
    text = repr(out).lower()
    assert TOKEN[12:24].lower() not in text and "[redacted]" in text
    assert out.windows[0] is clean and out.windows[1].source is Source.OAUTH and out.kind is Kind.PROTOCOL
    assert out.availability.reason == "signed in ([redacted])"
    untouched = PollResult(at=NOW, availability=Availability(available=True, reason="ok"), windows=[clean])
    assert scrub(untouched, [TOKEN]) is untouched and scrub(outcome, []) is outcome


@settings(max_examples=200, deadline=None)
@given(
    st.text(min_size=0, max_size=40),
    st.text(min_size=0, max_size=40),
    st.integers(min_value=0, max_value=len(TOKEN) - 12),
    st.integers(min_value=12, max_value=len(TOKEN)),
)
def test_no_twelve_characters_of_the_token_survive(before: str, after: str, start: int, length: int) -> None:
    piece = TOKEN[start : start + length]
    if len(piece) < 12:
        return
    text = scrub_text(before + piece + after, [TOKEN]).lower()
    folded = TOKEN.lower()
    assert not any(folded[i : i + 12] in text for i in range(len(folded) - 11))
