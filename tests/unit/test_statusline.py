"""``bhoga statusline``'s pure parts: reading Claude Code's payload, the line, and ``--install``."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import msgspec
from hypothesis import given, settings, strategies as st

from bhoga.cli import statusline, statusline_install
from bhoga.protocol import QuotaWindow

SL = Path(__file__).resolve().parents[1] / "data" / "harness" / "statusline"
NOW = 1790250000.0  # before every reset in the fixtures


def load(name: str) -> dict[str, object]:
    data = json.loads((SL / name).read_text())
    assert isinstance(data, dict)
    return data


def test_subscriber_payload_gives_every_bucket_as_a_window() -> None:
    windows = statusline.windows_of(load("subscriber.json"), NOW)
    decoded = [msgspec.convert(w, QuotaWindow) for w in windows]  # what the daemon will decode
    assert {w.key: w.pct_used for w in decoded} == {
        "burst": 37.0,
        "weekly": 61.0,
        "weekly/opus": 12.0,
        "weekly/sonnet": 4.0,
    }
    assert all(w.source == "statusline" and w.resets_at is not None for w in decoded)
    assert decoded[0].window_min == 300 and int(decoded[0].resets_at.timestamp()) == 1790258400  # type: ignore[union-attr]


def test_no_rate_limits_means_no_windows() -> None:
    for name in ("api-key.json", "old-version.json"):
        assert statusline.windows_of(load(name), NOW) == []


def test_bad_values_are_left_out() -> None:
    windows = statusline.windows_of(load("bad-values.json"), NOW)
    assert windows == []


def test_a_reset_far_in_the_future_is_dropped_but_the_reading_kept() -> None:
    payload = {"rate_limits": {"five_hour": {"used_percentage": 10, "resets_at": NOW + 30 * 86400}}}
    (w,) = statusline.windows_of(payload, NOW)
    assert "resets_at" not in w and w["pct_used"] == 10


def test_default_line_and_colour() -> None:
    payload = load("subscriber.json")
    readings = statusline._readings(payload, NOW)
    values = statusline._values(payload, readings, "claude_code", NOW)
    line = statusline.render(values, None, colour=False)
    assert line == "opus 4.7 · 5h 37% (2h20m) · wk 61% · best: claude_code"
    painted = statusline.render(values, None, colour=True)
    assert "\033[32m5h 37%" in painted and painted.endswith("best: claude_code")
    values["burst"] = "96%"
    assert "\033[31m5h 96%" in statusline.render(values, None, colour=True)


def test_line_without_rate_limits_and_custom_format() -> None:
    payload = load("api-key.json")
    values = statusline._values(payload, [], "anthropic_api", NOW)
    assert statusline.render(values, None, colour=False) == "sonnet 4.6 · best: anthropic_api"
    assert (
        statusline.render(values, "{model} {burst} {cost} {context}", colour=False) == "sonnet 4.6 - $0.08 4%"
    )
    assert "bad --format" in statusline.render(values, "{nope}", colour=False)
    assert statusline.render({}, None, colour=False) == "bhoga"


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "rate_limits",
                        "five_hour",
                        "seven_day",
                        "seven_day_opus",
                        "used_percentage",
                        "resets_at",
                        "model",
                        "id",
                        "display_name",
                        "cost",
                        "total_cost_usd",
                        "context_window",
                    ]
                ),
                inner,
                max_size=4,
            )
        ),
        max_leaves=25,
    )
)
def test_any_payload_gives_bounded_windows_and_a_line(payload: object) -> None:
    data = payload if isinstance(payload, dict) else {}
    readings = statusline._readings(data, NOW)
    for w, _ in readings:
        window = msgspec.convert(w, QuotaWindow)
        assert 0 <= window.pct_used <= 1000 and not math.isnan(window.pct_used)
    line = statusline.render(statusline._values(data, readings, None, NOW), None, colour=False)
    assert line and "\n" not in line


def test_install_keeps_other_settings_with_backup(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"model": "opus", "permissions": {"allow": ["Bash(ls)"]}}, indent=2))
    out = io.StringIO()
    assert statusline_install.main(["--install", "--dry-run", "--settings", str(path)], out) == 0
    assert '+  "statusLine": {' in out.getvalue() and "dry run" in out.getvalue()
    assert "statusLine" not in path.read_text()
    out = io.StringIO()
    assert statusline_install.main(["--install", "--settings", str(path)], out) == 0
    data = json.loads(path.read_text())
    assert list(data) == ["model", "permissions", "statusLine"]
    assert data["statusLine"]["type"] == "command" and data["statusLine"]["command"].endswith("statusline")
    assert len(list(tmp_path.glob("settings.json.bak-*"))) == 1
    out = io.StringIO()
    assert statusline_install.main(["--install", "--settings", str(path)], out) == 0
    assert "already installed" in out.getvalue()


def test_install_offers_to_chain_an_existing_statusline(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(
        json.dumps({"statusLine": {"type": "command", "command": "~/bin/my line.sh", "padding": 1}})
    )
    out = io.StringIO()
    assert statusline_install.main(["--install", "--settings", str(path)], out) == 1
    assert (
        "--chain" in out.getvalue() and "my line.sh" in json.loads(path.read_text())["statusLine"]["command"]
    )
    assert statusline_install.main(["--install", "--chain", "--settings", str(path)], io.StringIO()) == 0
    entry = json.loads(path.read_text())["statusLine"]
    assert entry["padding"] == 1 and entry["command"].endswith("--chain-to '~/bin/my line.sh'")


def test_install_refuses_a_file_it_cannot_read(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text("{not json")
    err = io.StringIO()
    assert statusline_install.main(["--install", "--settings", str(path)], io.StringIO(), err) == 1
    assert "nothing changed" in err.getvalue() and path.read_text() == "{not json"


def test_doctor_says_whether_the_statusline_is_installed(tmp_path: Path) -> None:
    from bhoga.cli.doctor import check_statusline

    settings = tmp_path / ".claude" / "settings.json"
    assert check_statusline(settings) is None  # no Claude Code here: nothing to say
    settings.parent.mkdir()
    missing = check_statusline(settings)
    assert missing is not None and missing.status == "info" and "--install" in (missing.fix or "")
    statusline_install.main(["--install", "--settings", str(settings)], io.StringIO())
    installed = check_statusline(settings)
    assert installed is not None and installed.status == "pass"
    settings.write_text("{oops")
    broken = check_statusline(settings)
    assert broken is not None and broken.status == "warn"


def test_the_statusline_process_loads_neither_the_client_nor_msgspec() -> None:
    """What the installed ``bhoga statusline`` loads (the console script's argv), in a fresh process."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.argv = ['/usr/local/bin/bhoga', 'statusline']\n"
        "from bhoga.cli import entry, statusline\n"
        "heavy = ('msgspec', 'bhoga.client', 'bhoga.protocol', 'argparse', 'typing', 'platformdirs')\n"
        "print(' '.join(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env={"BHOGA_SOCKET": "/x"}
    )
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr
