"""The persistent store of runners, jobs and media, on twisted.enterprise.adbapi.

SQLite (WAL) in the data directory by default. The queries are plain SQL written with
``?`` placeholders; ``Store.paramstyle`` converts them in one place (``_sql``) so that a
psycopg backend ("%s") can run the same queries. Ids are made in Python (uuid4), times are
epoch float seconds (REAL) everywhere, JSON columns are TEXT. Every method returns a
Deferred. Job state changes go through ``choir_protocol.runners.jobs`` and are written with a
compare-and-set on the previous state; each one appends a row to ``job_events``, whose
growing ``seq`` lets a daemon notice jobs another process (the admin CLI) changed.
Tokens are kept as their SHA-256 (``choir_protocol.runners.tokens``); the tables and their
migrations are in ``store_schema``.
"""
import json
import os
import secrets
import sqlite3
import threading
import time
import uuid as uuidlib

import attrs
from twisted.enterprise import adbapi
from twisted.internet import defer

from choir_protocol.runners import jobs as J
from choir_protocol.runners.jobs import Job, JobError, JobState
from choir_protocol.runners.tokens import hash_token, token_prefix

from .operator import OperatorQueries
from .records import (JOB_COLUMNS, JOB_SELECT, RUNNER_SELECT, ApiToken, Media,  # noqa: F401
                      MediaFile, RegistrationToken, Runner, job_from_row, job_values,
                      runner_from_row)
from .schema import SCHEMA, SCHEMA_VERSION, migrate  # noqa: F401

DB_NAME = "choir.sqlite3"
RUNNER_TOKEN_PREFIX = "ptrt-"
REGISTRATION_TOKEN_PREFIX = "ptrrt-"
API_TOKEN_PREFIX = "choir-"
CONTACT_REFRESH = 30.0


class StaleJob(Exception):
    """The job changed under us: its state is no longer the one the transition started from."""


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


class Store(OperatorQueries):
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
        self._runner_cache = {}  # runner token -> Runner, while nothing was committed
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

    # -- registration tokens ---------------------------------------------------------------
    # Every token is kept as its hash (choir_protocol.runners.tokens) and looked up by it: the
    # record a create or register gives back holds the token itself, for the only time.

    def create_registration_token(self, now=None):
        token = REGISTRATION_TOKEN_PREFIX + secrets.token_hex(16)
        now = self.clock() if now is None else now
        record = RegistrationToken(token, now, False, str(uuidlib.uuid4()),
                                   token_prefix(token), hash_token(token))

        def go(cur):
            self._x(cur, "INSERT INTO registration_tokens (id, token_hash, token_prefix, "
                         "created_at, revoked) VALUES (?, ?, ?, ?, 0)",
                    (record.id, record.token_hash, record.prefix, now))
            return record
        return self._interact(go)

    def list_registration_tokens(self, include_revoked=False):
        def go(cur):
            sql = ("SELECT created_at, revoked, id, token_prefix, token_hash "
                   "FROM registration_tokens")
            if not include_revoked:
                sql += " WHERE revoked = 0"
            rows = self._x(cur, sql + " ORDER BY created_at").fetchall()
            return [RegistrationToken(None, c, bool(r), i, p, h) for c, r, i, p, h in rows]
        return self._interact(go)

    def revoke_registration_token(self, token):
        """True when a live token was revoked."""
        return self._interact(lambda cur: self._x(
            cur, "UPDATE registration_tokens SET revoked = 1 "
                 "WHERE token_hash = ? AND revoked = 0", (hash_token(token),)).rowcount == 1)

    # -- runners ---------------------------------------------------------------------------

    _RUNNER = RUNNER_SELECT

    def register_runner(self, registration_token, name, description=None, version=None,
                        ip=None, now=None):
        """-> Runner, with its token; JobError 404 for an unknown/revoked token, 400 for a
        taken name."""
        now = self.clock() if now is None else now
        registered_with = hash_token(registration_token)

        def go(cur):
            row = self._x(cur, "SELECT revoked FROM registration_tokens WHERE token_hash = ?",
                          (registered_with,)).fetchone()
            if row is None or row[0]:
                raise JobError("unknown_registration_token", 404,
                               "unknown or revoked registration token")
            if self._x(cur, "SELECT 1 FROM runners WHERE name = ?", (name,)).fetchone():
                raise JobError("runner_name_already_taken", 400,
                               f"a runner named {name!r} is already registered")
            runner = Runner(str(uuidlib.uuid4()), name, description, version,
                            RUNNER_TOKEN_PREFIX + secrets.token_hex(16), registered_with,
                            ip, now, now)
            try:
                self._x(cur, "INSERT INTO runners (id, name, description, version, "
                             "token_hash, registration_token_hash, ip, last_contact, "
                             "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        attrs.astuple(attrs.evolve(runner, token=hash_token(runner.token))))
            except sqlite3.IntegrityError:  # lost a race on the unique name
                raise JobError("runner_name_already_taken", 400,
                               f"a runner named {name!r} is already registered")
            return runner
        return self._interact(go)

    def unregister_runner(self, runner_id, now=None):
        """Deletes the runner; the jobs it was processing go back to pending."""
        now = self.clock() if now is None else now

        def go(cur):
            rows = self._x(cur, JOB_SELECT + " WHERE runner_id = ? AND state = ?",
                           (runner_id, int(JobState.PROCESSING))).fetchall()
            for row in rows:
                tr = J.abort(job_from_row(row), now)
                self._save(cur, tr.job, tr.previous_state, now)
            self._x(cur, "UPDATE jobs SET runner_id = NULL WHERE runner_id = ?", (runner_id,))
            return self._x(cur, "DELETE FROM runners WHERE id = ?", (runner_id,)).rowcount == 1
        return self._interact(go)

    def list_runners(self):
        return self._interact(lambda cur: [runner_from_row(r) for r in self._x(
            cur, self._RUNNER + " ORDER BY created_at").fetchall()])

    def runner_by_token(self, token, ip=None, now=None):
        """-> Runner, refreshing last_contact and ip at most every 30 s;
        JobError unknown_runner_token 404 otherwise."""
        now = self.clock() if now is None else now
        digest = hash_token(token)
        conn = self._reader_conn()
        if conn is not None:  # a cached or read-at-once runner that needs no refresh
            try:
                runner = self._runner_cache.get(digest) if self._fresh(conn) else None
                if runner is None:
                    rows = conn.execute(self._RUNNER + " WHERE token_hash = ?",
                                        (digest,)).fetchall()
                    if not rows:
                        return defer.fail(JobError("unknown_runner_token", 404,
                                                   "unknown runner token"))
                    runner = self._runner_cache[digest] = runner_from_row(rows[0])
            except sqlite3.Error:
                pass
            else:
                if runner.last_contact is not None and now - runner.last_contact < CONTACT_REFRESH:
                    return defer.succeed(runner)

        def go(cur):
            row = self._x(cur, self._RUNNER + " WHERE token_hash = ?", (digest,)).fetchone()
            if row is None:
                raise JobError("unknown_runner_token", 404, "unknown runner token")
            runner = runner_from_row(row)
            if runner.last_contact is None or now - runner.last_contact >= CONTACT_REFRESH:
                new_ip = ip if ip is not None else runner.ip
                self._x(cur, "UPDATE runners SET last_contact = ?, ip = ? WHERE id = ?",
                        (now, new_ip, runner.id))
                runner = attrs.evolve(runner, last_contact=now, ip=new_ip)
            return runner
        return self._interact(go)

    # -- jobs ------------------------------------------------------------------------------

    def _event(self, cur, job: Job, now):
        self._x(cur, "INSERT INTO job_events (job_uuid, state, at, origin) VALUES (?, ?, ?, ?)",
                (job.uuid, int(job.state), now, self.origin))

    def _get(self, cur, uuid) -> Job | None:
        row = self._x(cur, JOB_SELECT + " WHERE uuid = ?", (uuid,)).fetchone()
        return job_from_row(row) if row else None

    def _save(self, cur, job: Job, expected_state, now, previous: Job | None = None):
        cols = [c for c in JOB_COLUMNS if c != "uuid"]
        values = dict(zip(JOB_COLUMNS, job_values(job)))
        sets = ", ".join(f"{c} = ?" for c in cols)
        where, args = "uuid = ? AND state = ?", [job.uuid, int(expected_state)]
        if previous is not None:
            # the very record the transition was computed from: an update (same state) or a
            # new accept in between makes it stale, so it cannot be overwritten unseen
            where += " AND updated_at = ? AND COALESCE(job_token_hash, '') = ?"
            args += [previous.updated_at, previous.job_token_hash or ""]
        n = self._x(cur, f"UPDATE jobs SET {sets} WHERE {where}",
                    [values[c] for c in cols] + args).rowcount
        if n != 1:
            raise StaleJob(f"job {job.uuid} is no longer {JobState(expected_state).label}")
        self._event(cur, job, now)

    def _insert(self, cur, job: Job, now):
        self._x(cur, f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}) VALUES "
                     f"({', '.join('?' * len(JOB_COLUMNS))})", job_values(job))
        self._event(cur, job, now)

    def create_job(self, type, payload, *, priority=J.DEFAULT_PRIORITY, private_payload=None,
                   parent_uuid=None, media_id=None, uuid=None, now=None):
        """-> Transition (its ``notify_available`` says whether to tell the runners)."""
        now = self.clock() if now is None else now

        def go(cur):
            parent = None
            if parent_uuid is not None:
                parent = self._get(cur, parent_uuid)
                if parent is None:
                    raise J.unknown_job(parent_uuid)
            tr = J.new_job(uuid or str(uuidlib.uuid4()), type, payload, now, priority=priority,
                           private_payload=private_payload, parent=parent, media_id=media_id)
            self._insert(cur, tr.job, now)
            return tr
        return self._interact(go)

    def create_jobs(self, specs, now=None):
        """Several jobs in one transaction. ``specs``: dicts of create_job's arguments; a
        spec's parent_uuid may name a job created earlier in the same list."""
        now = self.clock() if now is None else now

        return self._interact(self._create_jobs, specs, now)

    def _create_jobs(self, cur, specs, now):
        out = []
        for spec in specs:
            spec = dict(spec)
            parent = None
            if spec.get("parent_uuid") is not None:
                parent = self._get(cur, spec.pop("parent_uuid"))
                if parent is None:
                    raise J.unknown_job("parent")
            spec.pop("parent_uuid", None)
            tr = J.new_job(spec.pop("uuid", None) or str(uuidlib.uuid4()), spec.pop("type"),
                           spec.pop("payload"), now, parent=parent, **spec)
            self._insert(cur, tr.job, now)
            out.append(tr)
        return out

    def get_job(self, uuid):
        return self._read(self._get, uuid)

    def list_jobs(self, states=None, types=None, limit=None):
        def go(cur):
            sql, args = JOB_SELECT, []
            sql, args = self._filters(sql, args, states, types)
            sql += " ORDER BY created_at, uuid"
            if limit is not None:
                sql += f" LIMIT {int(limit)}"
            return [job_from_row(r) for r in self._x(cur, sql, args).fetchall()]
        return self._interact(go)

    @staticmethod
    def _job_conditions(states, types) -> tuple:
        """-> ([SQL condition], [argument]) selecting jobs in ``states`` of ``types``."""
        where, args = [], []
        if states:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            args += [int(s) for s in states]
        if types:
            where.append(f"type IN ({', '.join('?' * len(types))})")
            args += list(types)
        return where, args

    @classmethod
    def _filters(cls, sql, args, states, types):
        where, more = cls._job_conditions(states, types)
        if where:
            sql += " WHERE " + " AND ".join(where)
        return sql, args + more

    def pending_jobs(self, job_types=None, limit=10):
        """Pending jobs, lowest priority number first, then the oldest.

        Cached until the next commit by anyone (see ``_fresh``): the same Job records may
        be answered again, so do not change their payloads."""
        def go(cur):
            sql, args = self._filters(JOB_SELECT, [], [JobState.PENDING], job_types)
            sql += f" ORDER BY priority, created_at, uuid LIMIT {int(limit)}"
            return [job_from_row(r) for r in self._x(cur, sql, args).fetchall()]
        conn = self._reader_conn()
        if conn is None:
            return self._interact(go)
        key = (tuple(job_types) if job_types else None, int(limit))
        try:
            jobs = self._pending_cache.get(key) if self._fresh(conn) else None
            if jobs is None:
                cur = conn.cursor()
                try:
                    jobs = go(cur)
                finally:
                    cur.close()
                if len(self._pending_cache) >= 64:  # job type lists come from the runners
                    self._pending_cache.clear()
                self._pending_cache[key] = jobs
        except sqlite3.Error:
            return self._interact(go)
        return defer.succeed(list(jobs))

    def accept(self, uuid, runner_id, now=None):
        """-> the processing Job with a new ptrjt- token (the only record that holds it:
        the store keeps its hash). The UPDATE is a compare-and-set on state = pending, so
        of two runners (or processes) only one gets the job."""
        now = self.clock() if now is None else now

        def go(cur):
            job = self._get(cur, uuid)
            if job is None:
                raise J.unknown_job(uuid)
            tr = J.accept(job, runner_id, J.new_job_token(), now)
            try:
                self._save(cur, tr.job, JobState.PENDING, now)
            except StaleJob:
                raise J.not_pending(self._get(cur, uuid))
            return tr.job
        return self._interact(go)

    def save(self, transition: J.Transition, now=None, previous: Job | None = None):
        """Writes a transition: the job (checked against its previous state, and against
        the whole ``previous`` record it was computed from when given) and the children it
        changed (checked to be still waiting), in one transaction.
        Raises StaleJob (and writes nothing) if any of them changed meanwhile."""
        now = self.clock() if now is None else now

        def go(cur):
            self._save(cur, transition.job, transition.previous_state, now, previous)
            for child in transition.children:
                self._save(cur, child, JobState.WAITING_FOR_PARENT_JOB, now)
            return transition
        return self._interact(go)

    def children(self, uuid):
        return self._interact(lambda cur: [job_from_row(r) for r in self._x(
            cur, JOB_SELECT + " WHERE parent_uuid = ? ORDER BY created_at", (uuid,)).fetchall()])

    def delete_job(self, uuid):
        return self._interact(lambda cur: self._x(
            cur, "DELETE FROM jobs WHERE uuid = ?", (uuid,)).rowcount == 1)

    def stalled_jobs(self, now=None, vod_timeout=J.VOD_STALLED_AFTER,
                     live_timeout=J.LIVE_STALLED_AFTER):
        now = self.clock() if now is None else now

        def go(cur):
            rows = self._x(cur, JOB_SELECT + " WHERE state = ? AND updated_at < ?",
                           (int(JobState.PROCESSING), now - min(vod_timeout, live_timeout)))
            return [j for j in map(job_from_row, rows.fetchall())
                    if J.is_stalled(j, now, vod_timeout, live_timeout)]
        return self._interact(go)

    def last_event(self):
        """The current value of the monotonic job-event counter."""
        return self._read(lambda cur: self._x(
            cur, "SELECT COALESCE(MAX(seq), 0) FROM job_events").fetchone()[0])

    def changed_since(self, seq, with_origin=False):
        """-> (new seq, [(job uuid, state)]) of the job changes after ``seq``, in order;
        ``with_origin``: [(job uuid, state, made by another Store: another process)]."""
        def go(cur):
            rows = self._x(cur, "SELECT seq, job_uuid, state, origin FROM job_events "
                                "WHERE seq > ? ORDER BY seq", (seq,)).fetchall()
            if not rows:
                return seq, []
            if with_origin:
                return rows[-1][0], [(u, JobState(s), o != self.origin) for _, u, s, o in rows]
            return rows[-1][0], [(u, JobState(s)) for _, u, s, _ in rows]
        return self._read(go)

    # -- media -----------------------------------------------------------------------------

    _MEDIA = ("SELECT id, kind, name, path, probe, webhook, created_at, ended_at, "
              "webhook_sent_at, webhook_error FROM media")
    _FILE = "SELECT id, media_id, role, name, path, size, created_at FROM media_files"

    @staticmethod
    def _media(row):
        row = list(row)
        row[4] = json.loads(row[4]) if row[4] is not None else None
        return Media(*row)

    def create_media(self, kind, name, path=None, probe=None, webhook=None, now=None,
                     media_id=None):
        media = Media(media_id or str(uuidlib.uuid4()), kind, name, path, probe, webhook,
                      self.clock() if now is None else now)

        return self._interact(self._insert_media, media)

    def _insert_media(self, cur, media):
        self._x(cur, "INSERT INTO media (id, kind, name, path, probe, webhook, created_at)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (media.id, media.kind, media.name, media.path,
                 None if media.probe is None else json.dumps(media.probe), media.webhook,
                 media.created_at))
        return media

    def publish_media(self, kind, name, path, inputs, job_specs, *, probe=None, webhook=None,
                      media_id=None, now=None):
        """A media, its input files ([path]) and its jobs, in one transaction: no media
        without its jobs, whatever crashes. -> (Media, [Transition])."""
        now = self.clock() if now is None else now
        media = Media(media_id or str(uuidlib.uuid4()), kind, name, path, probe, webhook, now)

        def go(cur):
            self._insert_media(cur, media)
            for f in inputs:
                self._insert_file(cur, MediaFile(str(uuidlib.uuid4()), media.id, "input",
                                                 os.path.basename(f), f, os.path.getsize(f),
                                                 now))
            return media, self._create_jobs(
                cur, [{"media_id": media.id, **spec} for spec in job_specs], now)
        return self._interact(go)

    def get_media(self, media_id):
        def go(cur):
            row = self._x(cur, self._MEDIA + " WHERE id = ?", (media_id,)).fetchone()
            return self._media(row) if row else None
        return self._interact(go)

    def list_media(self):
        return self._interact(lambda cur: [self._media(r) for r in self._x(
            cur, self._MEDIA + " ORDER BY created_at").fetchall()])

    def update_media(self, media_id, *, probe=None, path=None, webhook=None):
        def go(cur):
            for col, val in (("probe", None if probe is None else json.dumps(probe)),
                             ("path", path), ("webhook", webhook)):
                if val is not None:
                    self._x(cur, f"UPDATE media SET {col} = ? WHERE id = ?", (val, media_id))
        return self._interact(go)

    def delete_media(self, media_id):
        return self._interact(lambda cur: self._x(
            cur, "DELETE FROM media WHERE id = ?", (media_id,)).rowcount == 1)

    def add_media_file(self, media_id, role, name, path, size=None, now=None):
        f = MediaFile(str(uuidlib.uuid4()), media_id, role, name, path, size,
                      self.clock() if now is None else now)
        return self._interact(self._insert_file, f)

    def _insert_file(self, cur, f: MediaFile):
        self._x(cur, "INSERT INTO media_files (id, media_id, role, name, path, size, created_at) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)", attrs.astuple(f))
        return f

    def media_files(self, media_id, role=None):
        def go(cur):
            sql, args = self._FILE + " WHERE media_id = ?", [media_id]
            if role is not None:
                sql, args = sql + " AND role = ?", args + [role]
            return [MediaFile(*r) for r in self._x(cur, sql + " ORDER BY created_at", args).fetchall()]
        return self._interact(go)

    def delete_media_file(self, file_id):
        return self._interact(lambda cur: self._x(
            cur, "DELETE FROM media_files WHERE id = ?", (file_id,)).rowcount == 1)

    def media_by_path(self, path):
        def go(cur):
            row = self._x(cur, self._MEDIA + " WHERE path = ?", (path,)).fetchone()
            return self._media(row) if row else None
        return self._interact(go)

    def media_jobs(self, media_id):
        return self._interact(lambda cur: [job_from_row(r) for r in self._x(
            cur, JOB_SELECT + " WHERE media_id = ? ORDER BY created_at, "
                               "parent_uuid IS NOT NULL, uuid",
            (media_id,)).fetchall()])

    def mark_media_ended(self, media_id, now=None):
        """True for the one caller that marks it (compare-and-set on ended_at IS NULL)."""
        now = self.clock() if now is None else now
        return self._interact(lambda cur: self._x(
            cur, "UPDATE media SET ended_at = ? WHERE id = ? AND ended_at IS NULL",
            (now, media_id)).rowcount == 1)

    def edit_media(self, media_id, plan, now=None):
        """A new round of jobs on a finished media (a studio edit), in one transaction:
        ``plan(jobs)`` gets the media's jobs as they stand in it and returns the job specs
        (or raises); the media is shown processing again and its webhook fires again at the
        end. -> [Transition]."""
        now = self.clock() if now is None else now

        def go(cur):
            jobs = [job_from_row(r) for r in self._x(
                cur, JOB_SELECT + " WHERE media_id = ? ORDER BY created_at",
                (media_id,)).fetchall()]
            specs = plan(jobs)
            self._x(cur, "UPDATE media SET ended_at = NULL, webhook_sent_at = NULL, "
                         "webhook_error = NULL WHERE id = ?", (media_id,))
            return self._create_jobs(cur, [{"media_id": media_id, **s} for s in specs], now)
        return self._interact(go)

    def media_awaiting_webhook(self):
        """Media whose jobs all ended but whose webhook has not been delivered."""
        return self._interact(lambda cur: [self._media(r) for r in self._x(
            cur, self._MEDIA + " WHERE ended_at IS NOT NULL AND webhook_sent_at IS NULL "
                               "ORDER BY ended_at").fetchall()])

    def set_webhook_outcome(self, media_id, sent_at=None, error=None):
        return self._interact(lambda cur: self._x(
            cur, "UPDATE media SET webhook_sent_at = ?, webhook_error = ? WHERE id = ?",
            (sent_at, error, media_id)))

    # -- API tokens (uploads over HTTP) --------------------------------------------------------

    def create_api_token(self, name, now=None):
        token = API_TOKEN_PREFIX + secrets.token_hex(16)
        now = self.clock() if now is None else now
        record = ApiToken(token, name, now, False, token_prefix(token), hash_token(token))
        return self._interact(lambda cur: (self._x(
            cur, "INSERT INTO api_tokens (token_hash, token_prefix, name, created_at, revoked) "
                 "VALUES (?, ?, ?, ?, 0)", (record.token_hash, record.prefix, name, now)),
            record)[1])

    def list_api_tokens(self, include_revoked=False):
        def go(cur):
            sql = "SELECT name, created_at, revoked, token_prefix, token_hash FROM api_tokens"
            if not include_revoked:
                sql += " WHERE revoked = 0"
            return [ApiToken(None, n, c, bool(r), p, h)
                    for n, c, r, p, h in self._x(cur, sql + " ORDER BY created_at").fetchall()]
        return self._interact(go)

    def revoke_api_token(self, token):
        return self.revoke_api_token_hash(hash_token(token))

    def revoke_api_token_hash(self, token_hash):
        """True when a live token was revoked (``list_api_tokens`` gives the hashes)."""
        return self._interact(lambda cur: self._x(
            cur, "UPDATE api_tokens SET revoked = 1 WHERE token_hash = ? AND revoked = 0",
            (token_hash,)).rowcount == 1)

    def api_token_valid(self, token):
        return self._interact(lambda cur: self._x(
            cur, "SELECT 1 FROM api_tokens WHERE token_hash = ? AND revoked = 0",
            (hash_token(token),)).fetchone() is not None)
