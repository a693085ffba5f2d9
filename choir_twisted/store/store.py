"""The persistent store of runners, jobs and media, on twisted.enterprise.adbapi.

SQLite (WAL) in the data directory by default. The queries are plain SQL written with
``?`` placeholders; ``Store.paramstyle`` converts them in one place (``_sql``) so that a
psycopg backend ("%s") can run the same queries. Ids are made in Python (uuid4), times are
epoch float seconds (REAL) everywhere, JSON columns are TEXT. Every method returns a
Deferred. This module holds the connections, the transactions and the schema's creation;
the queries are the mixins of ``Store``, one per job: ``jobs`` (claims, transitions, the
change feed), ``tokens`` (registration and API tokens, runners), ``media`` (media and their
files) and ``operator`` (the admin API's pages); the tables and their migrations are in
``schema``.
"""
import os
import sqlite3
import threading
import time
import uuid as uuidlib

from twisted.enterprise import adbapi
from twisted.internet import defer

from .jobs import JobQueries, StaleJob  # noqa: F401 (importers take it from here)
from .media import MediaQueries
from .operator import OperatorQueries
from .schema import SCHEMA, SCHEMA_VERSION, migrate
from .tokens import TokenQueries

DB_NAME = "choir.sqlite3"


def _open_sqlite(conn):
    conn.execute("PRAGMA busy_timeout=5000")
    # WAL is a property of the file, set once; switching to it needs the file to itself and
    # does not wait on the busy timeout: two processes opening a new store at the same time
    # (the daemon starting, choir-admin) retry for a while (this runs in a pool thread)
    for attempt in range(100):
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or attempt == 99:
                raise
            time.sleep(0.05)
    # Under WAL, NORMAL syncs at checkpoints, not at every commit: a commit survives the
    # process crashing; only an OS crash or power cut may lose the last ones.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")


def _owner_only(path):
    """An older version made the store, and its -wal and -shm, readable by all (0644):
    they become the owner's alone. A store someone else owns is left as it is (the
    owner's next open fixes it)."""
    for name in (path, path + "-wal", path + "-shm"):
        try:
            if os.stat(name).st_mode & 0o077:
                os.chmod(name, 0o600)
        except (FileNotFoundError, PermissionError):
            pass


class Store(JobQueries, TokenQueries, MediaQueries, OperatorQueries):
    paramstyle = "?"  # a psycopg backend sets "%s"

    def __init__(self, pool: adbapi.ConnectionPool, clock=time.time, read_path=None):
        self.pool = pool
        self.clock = clock
        self.origin = uuidlib.uuid4().hex  # marks the job events this Store writes
        # The hot reads (runner by token, pending jobs, a job, the change feed) run at once
        # on the reactor's thread, on a connection of their own (SQLite: ``read_path``),
        # instead of queueing behind the pool's thread: see ``_reader_conn``.
        self._read_path = read_path
        self._reader = None
        self._data_version = None
        self._runner_cache = {}  # runner token -> RunnerRecord, while nothing was committed
        self._pending_cache = {}  # (job types, limit) -> [Job], likewise

    @classmethod
    def sqlite(cls, path: str | None = None, data_dir: str = ".", clock=time.time) -> "Store":
        path = path or os.path.join(data_dir, DB_NAME)
        try:  # a new store is the owner's alone (SQLite's -wal and -shm files take the
            # database file's permissions)
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            _owner_only(path)
        pool = adbapi.ConnectionPool("sqlite3", path, check_same_thread=False, cp_min=1,
                                     cp_max=1, cp_openfun=_open_sqlite)
        return cls(pool, clock, read_path=path)

    @classmethod
    async def open(cls, path: str | None = None, data_dir: str = ".", clock=time.time):
        store = cls.sqlite(path, data_dir, clock)
        try:
            await store.create_schema()
        except BaseException:
            store.close()  # its pool's threads would otherwise keep the process alive
            raise
        return store

    def close(self) -> None:
        """Closes the pool's connections and threads; calling it again does nothing."""
        if not getattr(self, "_closed", False):
            self._closed = True
            self.pool.close()
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    # -- plumbing --------------------------------------------------------------------------

    def _sql(self, sql: str) -> str:
        return sql if self.paramstyle == "?" else sql.replace("?", self.paramstyle)

    def _x(self, cur, sql, args=()):
        cur.execute(self._sql(sql), tuple(args))
        return cur

    def _interact(self, fn, *args, **kw):
        return self.pool.runInteraction(fn, *args, **kw)

    # Reads on the reactor's thread. SQLite in WAL mode never makes a reader wait for a
    # writer, and these reads are indexed lookups of a few rows, so running them at once is
    # cheaper than the two thread hops of the pool. The connection is read-only and never
    # waits (busy timeout 0): should it ever be busy, the read goes through the pool.
    # ``PRAGMA data_version`` changes whenever another connection (the pool's, or another
    # process's, e.g. choir-admin) commits: the caches are dropped then, so they never
    # answer with anything older than the last commit.

    def _reader_conn(self):
        """The reactor thread's read connection, or None (not SQLite, closed, or called
        from another thread)."""
        if (self._read_path is None or getattr(self, "_closed", False)
                or threading.get_ident() != threading.main_thread().ident):
            return None
        if self._reader is None:
            conn = sqlite3.connect(self._read_path, timeout=0, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA query_only=ON")
            self._reader = conn
        return self._reader

    def _fresh(self, conn) -> bool:
        """True when nothing was committed since the caches were filled; else drops them."""
        version = conn.execute("PRAGMA data_version").fetchall()[0][0]
        if version == self._data_version:
            return True
        self._data_version = version
        self._runner_cache.clear()
        self._pending_cache.clear()
        return False

    def data_version(self):
        """A number that changes whenever anyone commits to the store (None: unknown)."""
        conn = self._reader_conn()
        if conn is None:
            return None
        try:
            self._fresh(conn)
        except sqlite3.Error:
            return None
        return self._data_version

    def _read(self, fn, *args):
        """``fn(cursor, *args)``, a read, at once on the read connection when there is one;
        else (or if that connection is busy) through the pool. -> Deferred."""
        conn = self._reader_conn()
        if conn is None:
            return self._interact(fn, *args)
        cur = conn.cursor()
        try:
            result = fn(cur, *args)
        except sqlite3.Error:
            return self._interact(fn, *args)
        except Exception:
            return defer.fail()
        finally:
            cur.close()  # resets its statement: no read transaction stays open
        return defer.succeed(result)

    def create_schema(self):
        """Makes the tables of a new store, or migrates an older one, in one transaction
        that holds the write lock from the start: of two processes opening an old store
        at once, one migrates and the other finds it done (a token hashed twice would
        be lost). -> Deferred."""
        def go(cur):
            cur.execute("BEGIN IMMEDIATE")  # a PostgreSQL backend: LOCK TABLE instead
            version = SCHEMA_VERSION
            if self._has_table(cur, "schema_version"):
                row = self._x(cur, "SELECT version FROM schema_version").fetchone()
                version = row[0] if row else SCHEMA_VERSION
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"the store is of schema version {version}, newer than "
                                   f"this program's {SCHEMA_VERSION}: upgrade choir")
            migrated = migrate(self, cur, version)  # before the DDL: it may add indexes
            for ddl in SCHEMA:
                cur.execute(ddl)
            if self._x(cur, "SELECT version FROM schema_version").fetchone() is None:
                self._x(cur, "INSERT INTO schema_version (version) VALUES (?)",
                        (SCHEMA_VERSION,))
            elif migrated:
                self._x(cur, "UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
            return migrated

        def scrub(cur):
            # what the migration replaced (clear tokens) may still be in the WAL's older
            # frames: copy the WAL into the database and empty it (should another process
            # be reading just then, the WAL stays, and its old frames are overwritten as
            # it is reused). secure_delete was for the migration only.
            cur.execute("PRAGMA secure_delete=OFF")
            cur.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

        async def run():
            if await self._interact(go):
                await self._interact(scrub)
        return defer.ensureDeferred(run())

    def _has_table(self, cur, name) -> bool:
        # SQLite's catalogue; a PostgreSQL backend asks information_schema.tables
        return self._x(cur, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                       (name,)).fetchone() is not None

    def journal_mode(self):
        return self._interact(lambda cur: cur.execute("PRAGMA journal_mode").fetchone()[0])
