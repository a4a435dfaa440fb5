"""Follow the harnesses' log folders and put every call they record into the ledger, once.

Per file the store keeps its identity (device, inode), the offset read up to and the parser's context
there, committed in the same transaction as the calls read up to that offset. Each pass:

* lists the folders (in a worker thread) and compares each file with its mark: the same file grown
  is read from its offset; a file replaced (new inode) or truncated (smaller than the offset) is read
  again from the start (the dedupe keys make re-reading harmless); a file gone loses its mark;
* reads at most ``batch_bytes`` at a time, up to the last complete line (a half-written last line is
  left for the next pass), parses in a worker thread, commits, and yields before the next batch, so a
  first scan of a year of logs runs in the background while requests are answered;
* then waits for a change notification (inotify, ``watch.py``; a burst of appends settles first) or
  ``ingest.interval_s`` (the slow poll, which alone finds everything where there is no inotify).

Progress is published as ``QuotaKeeper.ingest_status`` (``daemon.status``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Final

import anyio
import anyio.lowlevel
import msgspec
import structlog

from bhoga.protocol import IngestStatus, StoredTurn, TurnSource
from bhogad.config import IngestConfig
from bhogad.domain.keeper import QuotaKeeper
from bhogad.ingest import claude, codex
from bhogad.ingest.watch import Watcher
from bhogad.storage import harness

log = structlog.get_logger("bhogad.ingest")

#: A line longer than this is not a call record (nor a line we can hold): it is skipped whole.
MAX_LINE: Final = 8 << 20
_LONGEST_LIMIT: Final = timedelta(days=8)
#: Parsing runs in a worker thread but holds the GIL; the event loop would wait up to the interpreter's
#: switch interval (5 ms) to answer a request. Every this many lines the worker lets it go.
_YIELD_EVERY: Final = 32
#: After a change notification, how long appends may go on before the pass that reads them.
_SETTLE_S: Final = 0.3
_context_encoder = msgspec.json.Encoder()
_context_decoder = msgspec.json.Decoder(codex.Context)

AGENTS: Final = {TurnSource.CLAUDE_CODE_LOG: "claude-code", TurnSource.CODEX_LOG: "codex"}


@dataclass(frozen=True)
class Root:
    source: TurnSource
    path: Path
    #: File name pattern (``*.jsonl`` or ``rollout-*.jsonl``).
    pattern: str


def roots(cfg: IngestConfig, env: dict[str, str] | os._Environ[str], home: Path) -> list[Root]:
    """The folders to follow, whether they exist yet or not."""
    found: list[Root] = []
    if cfg.claude_code:
        dirs: list[Path] = [Path(d).expanduser() for d in cfg.claude_dirs]
        if not dirs:
            for base in (env.get("CLAUDE_CONFIG_DIR") or "").split(","):
                if base.strip():
                    dirs.append(Path(base.strip()).expanduser() / "projects")
            dirs += [home / ".config" / "claude" / "projects", home / ".claude" / "projects"]
        found += [Root(TurnSource.CLAUDE_CODE_LOG, d, "*.jsonl") for d in dict.fromkeys(dirs)]
    if cfg.codex:
        codex_home = Path(cfg.codex_home or env.get("CODEX_HOME") or home / ".codex").expanduser()
        found.append(Root(TurnSource.CODEX_LOG, codex_home / "sessions", "rollout-*.jsonl"))
        found.append(Root(TurnSource.CODEX_LOG, codex_home / "archived_sessions", "*.jsonl"))
    return found


@dataclass(frozen=True)
class Seen:
    path: str
    source: TurnSource
    dev: int
    ino: int
    size: int
    mtime_ns: int


def list_files(folders: list[Root]) -> list[Seen]:
    """Every log file under the folders that exist, with its identity (blocking)."""
    return list_tree(folders)[0]


def list_tree(folders: list[Root]) -> tuple[list[Seen], list[Path]]:
    """Every log file under the folders that exist, and every folder there (to watch; blocking)."""
    seen: dict[str, Seen] = {}
    dirs: list[Path] = []
    for root in folders:
        if not root.path.is_dir():
            continue
        dirs.append(root.path)
        dirs.extend(p for p in _walk(root.path, "*") if p.is_dir())
        for path in _walk(root.path, root.pattern):
            try:
                st = path.stat()
            except OSError:
                continue  # deleted meanwhile
            key = str(path)
            seen.setdefault(key, Seen(key, root.source, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return list(seen.values()), dirs


def _walk(top: Path, pattern: str) -> Iterator[Path]:
    try:
        yield from (p for p in top.rglob(pattern) if pattern == "*" or p.is_file())
    except OSError:
        return


class Parsed(msgspec.Struct, kw_only=True):
    calls: list[claude.ClaudeCall | codex.CodexCall]
    limits: list[claude.LimitHit]
    offset: int
    context: bytes | None


def read_batch(seen: Seen, offset: int, context: bytes | None, batch_bytes: int) -> Parsed:
    """Parse complete lines from ``offset``, at most ``batch_bytes`` of them (blocking)."""
    with open(seen.path, "rb") as f:
        f.seek(offset)
        data = f.read(batch_bytes)
        end = data.rfind(b"\n")
        if end < 0:
            if len(data) < batch_bytes:
                return Parsed(calls=[], limits=[], offset=offset, context=context)  # a half-written line
            # One line longer than a batch: find its end and skip it whole.
            skipped = len(data)
            while True:
                more = f.read(batch_bytes)
                if not more:
                    return Parsed(calls=[], limits=[], offset=offset, context=context)
                cut = more.find(b"\n")
                if cut >= 0:
                    return Parsed(calls=[], limits=[], offset=offset + skipped + cut + 1, context=context)
                skipped += len(more)
                if skipped > MAX_LINE * 64:
                    return Parsed(calls=[], limits=[], offset=offset + skipped, context=context)
    chunk = data[: end + 1]
    calls: list[claude.ClaudeCall | codex.CodexCall] = []
    limits: list[claude.LimitHit] = []
    if seen.source is TurnSource.CLAUDE_CODE_LOG:
        for n, line in enumerate(chunk.splitlines(), 1):
            if n % _YIELD_EVERY == 0:
                time.sleep(0)  # hand the GIL to the event loop if it is waiting (see _YIELD_EVERY)
            item = claude.parse_line(line)
            if isinstance(item, claude.ClaudeCall):
                calls.append(item)
            elif isinstance(item, claude.LimitHit):
                limits.append(item)
        return Parsed(calls=calls, limits=limits, offset=offset + len(chunk), context=None)
    ctx = codex.Context()
    if context:
        try:
            ctx = _context_decoder.decode(context)
        except msgspec.DecodeError:
            ctx = codex.Context()
    for n, line in enumerate(chunk.splitlines(), 1):
        if n % _YIELD_EVERY == 0:
            time.sleep(0)
        call = codex.parse_line(line, ctx)
        if call is not None:
            calls.append(call)
    return Parsed(calls=calls, limits=[], offset=offset + len(chunk), context=_context_encoder.encode(ctx))


class Scanner:
    def __init__(
        self, keeper: QuotaKeeper, env: dict[str, str] | os._Environ[str], home: Path | None = None
    ) -> None:
        self.keeper = keeper
        self.env = env
        self.home = home or Path(env.get("HOME") or Path.home())
        self.status = IngestStatus()
        self.marks: dict[str, harness.FileMark] = {}
        #: Called after each pass (tests and benchmarks wait on it).
        self.on_pass: Callable[[], None] | None = None

    @property
    def cfg(self) -> IngestConfig:
        return self.keeper.cfg.ingest

    async def run(self) -> None:
        keeper = self.keeper
        self.marks = await anyio.to_thread.run_sync(
            keeper.store.read, harness.load_marks, limiter=keeper.writer.limiter
        )
        watcher = Watcher.create()
        try:
            await self._loop(watcher)
        finally:
            if watcher is not None:
                watcher.close()

    async def _loop(self, watcher: Watcher | None) -> None:
        keeper = self.keeper
        first = True
        while True:
            again = False
            folders = roots(self.cfg, self.env, self.home)
            self.status.sources = sorted({r.source.value for r in folders if r.path.is_dir()})
            keeper.ingest_status = self.status if folders else None
            if folders:
                try:
                    dirs = await self.scan(folders)
                    self.status.last_error = None
                    if watcher is not None:
                        # A folder watched only now may have got files after this pass listed it
                        # (a project folder is created and written at once): look once more.
                        again = watcher.watch(dirs) > 0 and not first
                except Exception as exc:  # one bad pass must not end ingest for good
                    self.status.last_error = f"{type(exc).__name__}: {exc}"
                    log.error("ingest pass failed", error=self.status.last_error)
            if self.on_pass is not None:
                self.on_pass()
            first = False
            if again:
                await anyio.sleep(_SETTLE_S)
            elif watcher is None:
                await anyio.sleep(self.cfg.interval_s)
            elif await watcher.wait(self.cfg.interval_s):
                # A harness writes a line at a time: let a burst of appends settle into one pass.
                await anyio.sleep(_SETTLE_S)

    async def scan(self, folders: list[Root]) -> list[Path]:
        """One pass; returns the folders it saw (to watch)."""
        keeper = self.keeper
        files, dirs = await anyio.to_thread.run_sync(list_tree, folders)
        present = {f.path for f in files}
        gone = [p for p in self.marks if p not in present]
        work: list[tuple[Seen, int, bytes | None]] = []
        for f in files:
            mark = self.marks.get(f.path)
            if mark is None or (mark.dev, mark.ino) != (f.dev, f.ino) or f.size < mark.offset:
                work.append((f, 0, None))  # new, replaced or truncated: from the start
            elif f.size > mark.offset:
                work.append((f, mark.offset, mark.context))
        self.status.files = len(files)
        self.status.bytes_pending = sum(f.size - offset for f, offset, _ in work)
        self.status.scanning = bool(work)
        if gone:
            await self._commit([], [], gone, [])
        for f, offset, context in sorted(work, key=lambda w: w[0].mtime_ns):
            held = self.marks.get(f.path)
            if offset == 0 and held is not None and (held.offset, held.ino, held.dev) != (0, f.ino, f.dev):
                # Truncated or replaced: remember that now, even if no complete line is there yet;
                # else a file regrown past the old offset before the next pass would look appended.
                reset = harness.FileMark(
                    path=f.path,
                    dev=f.dev,
                    ino=f.ino,
                    offset=0,
                    size=f.size,
                    mtime_ns=f.mtime_ns,
                    context=None,
                )
                await self._commit([], [reset], [], [])
            while True:
                try:
                    # Reading, parsing and pricing all run in a worker thread: a batch is hundreds
                    # of calls, and the event loop must stay free to answer requests meanwhile.
                    parsed, rows = await anyio.to_thread.run_sync(self._prepare, f, offset, context)
                except OSError as exc:
                    log.info("log file not readable now", path=f.path, error=exc.strerror)
                    break
                done = parsed.offset - offset
                if done <= 0:
                    break
                mark = harness.FileMark(
                    path=f.path,
                    dev=f.dev,
                    ino=f.ino,
                    offset=parsed.offset,
                    size=max(f.size, parsed.offset),
                    mtime_ns=f.mtime_ns,
                    context=parsed.context,
                )
                await self._commit(rows, [mark], [], parsed.limits)
                self.status.bytes_read += done
                self.status.bytes_pending = max(0, self.status.bytes_pending - done)
                offset, context = parsed.offset, parsed.context
                if offset >= f.size:
                    break
                await anyio.lowlevel.checkpoint()  # let requests in between batches
        self.status.scanning = False
        self.status.bytes_pending = 0
        self.status.last_scan_at = keeper.clock()
        return dirs

    def _prepare(self, f: Seen, offset: int, context: bytes | None) -> tuple[Parsed, list[harness.IngestRow]]:
        """Read a batch and turn its calls into priced ledger rows, one per call (blocking)."""
        parsed = read_batch(f, offset, context, self.cfg.batch_bytes)
        # Within a batch, one reading per call: the one with the most tokens (a streamed message).
        best: dict[str, harness.IngestRow] = {}
        for n, call in enumerate(parsed.calls, 1):
            if n % _YIELD_EVERY == 0:
                time.sleep(0)  # as in read_batch: pricing holds the GIL too
            row = self._row(f.source, call)
            held = best.get(row.dedupe_key)
            if held is None or _tokens(row.turn) > _tokens(held.turn):
                best[row.dedupe_key] = row
        return parsed, list(best.values())

    def _row(self, source: TurnSource, call: claude.ClaudeCall | codex.CodexCall) -> harness.IngestRow:
        cfg = self.cfg
        if isinstance(call, claude.ClaudeCall):
            provider, cache_write, reported = cfg.claude_provider, call.cache_write_tokens, call.cost_usd
            request_id = call.request_id
        else:
            provider, cache_write, reported, request_id = cfg.codex_provider, 0, None, None
        tokens = (call.input_tokens, call.output_tokens, call.cache_read_tokens, cache_write)
        cost, pricing, billed = self.keeper.price(provider, call.model, tokens, reported)
        one_hour = call.cache_write_1h_tokens if isinstance(call, claude.ClaudeCall) else 0
        if one_hour and cost is not None and reported is None:
            # Prices carry the 5-minute cache-write rate (1.25x input); a 1-hour write costs 2x, i.e.
            # 1.6 times that. The split is only known here, from the transcript.
            extra, _, _ = self.keeper.price(provider, call.model, (0, 0, 0, one_hour), None)
            if extra:
                cost += extra * (2.0 / 1.25 - 1.0)
                pricing = f"{pricing}; 1-hour cache writes at 2x input"
        turn = StoredTurn(
            id=0,
            at=call.at,
            provider=provider,
            model=call.model,
            input_tokens=call.input_tokens,
            output_tokens=call.output_tokens,
            cache_read_tokens=call.cache_read_tokens,
            cache_write_tokens=cache_write,
            status_code=200,
            session=call.session,
            agent=AGENTS[source],
            cost_usd=cost,
            pricing=pricing,
            billed=billed,
            source=source,
            request_id=request_id,
        )
        return harness.IngestRow(turn=turn, dedupe_key=call.dedupe_key)

    async def _commit(
        self,
        rows: list[harness.IngestRow],
        marks: list[harness.FileMark],
        gone: list[str],
        limits: list[claude.LimitHit],
    ) -> None:
        keeper = self.keeper
        # Ids come from the daemon's counter before the thread runs, so client turns never collide.
        first = keeper.next_turn_id
        keeper.next_turn_id += len(rows)
        result = await anyio.to_thread.run_sync(
            keeper.store.write,
            lambda conn: harness.commit_ingest(conn, rows, marks, gone, first),
            limiter=keeper.writer.limiter,
        )
        for m in marks:
            self.marks[m.path] = m
        for p in gone:
            self.marks.pop(p, None)
        if result.inserted:
            keeper.store.log_rows = True  # from now on a client's report may repeat one of these
        keeper.ingested(result.inserted)
        self.status.turns_ingested += len(result.inserted)
        self.status.duplicates += result.duplicates
        now = keeper.clock()
        for hit in limits:
            # The longest Claude limit is weekly; a reset further out is a bad value, not a limit.
            if now < hit.until <= now + _LONGEST_LIMIT:
                keeper.cooldown_until(
                    self.cfg.claude_provider, hit.until, "Claude Code reported its usage limit reached"
                )


def _tokens(t: StoredTurn) -> int:
    return t.input_tokens + t.output_tokens + t.cache_read_tokens + t.cache_write_tokens
