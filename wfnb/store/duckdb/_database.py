"""The DuckDB file and its journal, kept as one durable store.

A write is acknowledged once its journal frame is synced; the frames are folded
into DuckDB later, in one transaction, and opening the file replays whatever the
journal holds past what DuckDB has (a killed process's acknowledged rows). This
class is that bookkeeping: the connection, the frames not folded yet, and which
output tables exist. It does no threading of its own: the writer (``_writer``)
changes it from one thread at a time, under its ``_busy`` lock, and decides when
a fold is due.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import duckdb

from wfnb.errors import StoreError, StoreLocked
from wfnb.store.duckdb import _fold, _fork, _lock, _schema
from wfnb.store.duckdb._codec import EncodedBatch
from wfnb.store.duckdb._files import JournalFiles
from wfnb.store.duckdb._fold import Rows
from wfnb.store.duckdb._journal import Journal


class Unfolded:
    """The journal's frames not folded into DuckDB yet, oldest first, and how many
    rows they hold (a fold is due past ``fold_rows`` of them)."""

    def __init__(self, frames: list[tuple[int, Rows]] | None = None) -> None:
        self.frames = frames or []
        self.rows = sum(len(part) for _, rows in self.frames for part in rows)

    def __bool__(self) -> bool:
        return bool(self.frames)

    def add(self, seq: int, rows: Rows) -> None:
        self.frames.append((seq, rows))
        self.rows += sum(len(part) for part in rows)

    def after(self, seq: int) -> Unfolded:
        """Those after ``seq``: the others are folded."""
        return Unfolded([frame for frame in self.frames if frame[0] > seq])


class Database:
    def __init__(
        self,
        path: Path,
        files: JournalFiles,
        *,
        lock_timeout: float,
        journal: bool,
        stats: dict[str, int],
    ) -> None:
        self.path = path
        self.lock_timeout = lock_timeout
        self.owner_path = _lock.owner_path(path)
        # The journal is always replayed on open (a store opened with journal=False
        # must still recover what a journalling process acknowledged); it is only
        # appended to when ``use_journal``.
        self._journal = Journal(path.with_name(path.name + ".journal"), files)
        self.use_journal = journal
        #: the writer's counters: ``groups``, ``frames``, ``folds`` and ``opens`` here
        self.stats = stats
        self._con: duckdb.DuckDBPyConnection | None = None
        self.pending = Unfolded()
        self._seq = 0
        self._tables: set[str] = set()
        self._owner = ""
        #: the pid of the process this one was inherited from by a fork (see _fork)
        self.forked_from: int | None = None
        _fork.track(self)

    @property
    def connection(self) -> duckdb.DuckDBPyConnection | None:
        return self._con

    def forked_refusal(self) -> str | None:
        """Why this process may not use the file (it was forked from one that
        had it), if so."""
        return _fork.inherited_refusal(self)

    # -- writing --------------------------------------------------------------------
    def write_encoded(self, batches: list[EncodedBatch]) -> list[StoreError | None]:
        """Persist ``batches`` as one group; each one's error, or None. Should the
        group fail, each batch is tried alone: one bad batch fails by itself."""
        self.stats["groups"] += 1
        try:
            self.connect()
            self._persist(batches)
        except StoreError as exc:
            if len(batches) == 1 or isinstance(exc, StoreLocked):
                return [exc] * len(batches)
            errors: list[StoreError | None] = []
            for one in batches:  # find the culprit: the others still commit
                try:
                    self._persist([one])
                except StoreError as single:
                    errors.append(single)
                else:
                    errors.append(None)
            return errors
        return [None] * len(batches)

    def _persist(self, batches: list[EncodedBatch]) -> None:
        if not self.use_journal or any(b.tables for b in batches):
            # Table outputs go straight into DuckDB (a journal copy of a big table
            # would double the bytes written); the journal is folded first so the
            # order of records is kept.
            self.fold()
            self._commit(batches)
            return
        rows: Rows = ([], [], [], [], [])
        for b in batches:
            for acc, part in zip(rows, b.rows, strict=True):
                acc.extend(part)
        self._seq += 1
        try:
            self._journal.append(self._seq, rows)
        except OSError as exc:
            self._seq -= 1
            raise StoreError(f"cannot write the journal {self._journal.path}: {exc}") from exc
        self.stats["frames"] += 1
        self.pending.add(self._seq, rows)

    # -- folding --------------------------------------------------------------------
    def fold(self) -> None:
        """Fold the journal into DuckDB. Should that fail for a reason other than a
        lost connection, frames are folded one by one and one DuckDB cannot take (a
        poison frame, which would otherwise block every later fold and read) is
        moved to ``<db>.rejected`` and logged as an error."""
        if not self.pending:
            return
        try:
            self._commit([], self.pending.frames)
        except StoreError:
            if self._con is None:  # DuckDB went away: the journal is replayed on reopen
                raise
            for frame in self.pending.frames:
                try:
                    self._commit([], [frame])
                except StoreError as exc:
                    if self._con is None:
                        raise
                    self._reject(frame, exc)

    def _reject(self, frame: tuple[int, Rows], exc: StoreError) -> None:
        _fold.reject(self.connect(), self.path, frame, exc)
        self._forget_folded(frame[0])

    def _forget_folded(self, seq: int) -> None:
        self.pending = self.pending.after(seq)
        if not self.pending:
            with contextlib.suppress(OSError):  # harmless: folded frames are skipped by seq
                self._journal.reset()

    def _commit(
        self, batches: list[EncodedBatch], frames: list[tuple[int, Rows]] | None = None
    ) -> None:
        """One transaction: journal ``frames`` (oldest first), then ``batches``."""
        con = self.connect()
        try:
            self._tables = _fold.transaction(con, self.path, frames or [], batches, self._tables)
        except StoreError as exc:
            if isinstance(exc.__cause__, duckdb.FatalException):
                # DuckDB invalidated the database: reopen on the next operation, which
                # replays the journal, so acknowledged rows are not lost.
                self.drop_connection()
            raise
        if frames:
            self.stats["folds"] += 1
            self._forget_folded(frames[-1][0])

    # -- connection and lock ----------------------------------------------------------
    def connect(self) -> duckdb.DuckDBPyConnection:
        """The open connection, opening the file first if need be: the lock taken
        (`StoreLocked` past ``lock_timeout``), the schema migrated, the journal
        replayed and folded."""
        if self._con is not None:
            return self._con
        if (refusal := self.forked_refusal()) is not None:
            raise StoreError(refusal)
        con = _lock.connect_with_retry(self.path, self.lock_timeout)
        try:
            _schema.migrate(con)
            self._tables = _schema.output_tables(con)
            folded = _schema.folded_seq(con)
            frames = self._journal.open()
            self._seq = max([folded, *(seq for seq, _ in frames)])
            self.pending = Unfolded(frames).after(folded)
            self._owner = _lock.write_owner(self.owner_path)
        except BaseException as exc:
            con.close()
            self._journal.close()
            if isinstance(exc, duckdb.Error):
                raise _lock.translate(exc, self.path) from exc
            if isinstance(exc, OSError):
                raise StoreError(f"cannot open the journal of {self.path}: {exc}") from exc
            raise
        self._con = con
        self.stats["opens"] += 1
        self.fold()  # a crashed predecessor's acknowledged rows, now in DuckDB
        return con

    def disconnect(self) -> None:
        """Fold what is left, then close the file (letting another process in)."""
        if self._con is None:
            return
        try:
            self.fold()
        finally:
            self.drop_connection()

    def drop_connection(self) -> None:
        if self._con is not None:
            with contextlib.suppress(duckdb.Error):
                self._con.close()
            self._con = None
        self._journal.close()
        self.pending = Unfolded()  # still in the journal file
        _lock.remove_owner(self.owner_path, self._owner)
