"""The store's jobs: their creation, claims, transitions and the change feed (a mixin of
``Store``, on its ``_interact``, ``_read`` and ``_x``).

Job state changes go through ``choir_protocol.runners.jobs`` and are written with a
compare-and-set on the previous state; each one appends a row to ``job_events``, whose
growing ``seq`` lets a daemon notice jobs another process (the admin CLI) changed.
"""
import sqlite3
import uuid as uuidlib

from twisted.internet import defer

from choir_protocol.runners import jobs as J
from choir_protocol.runners.jobs import Job, JobState

from .records import JOB_COLUMNS, JOB_SELECT, job_from_row, job_values


class StaleJob(Exception):
    """The job changed under us: its state is no longer the one the transition started from."""


class JobQueries:
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

    def save(self, transition: J.Transition, now=None, previous: Job | None = None,
             outputs=()):
        """Writes a transition: the job (checked against its previous state, and against
        the whole ``previous`` record it was computed from when given), the children it
        changed (checked to be still waiting) and ``outputs`` ([(name, path, size)]: the
        job's result files, listed as its media's ``output`` files, replacing those of the
        same name), in one transaction: whoever sees the job's new state sees its files.
        Raises StaleJob (and writes nothing) if any of them changed meanwhile."""
        now = self.clock() if now is None else now

        def go(cur):
            self._save(cur, transition.job, transition.previous_state, now, previous)
            for child in transition.children:
                self._save(cur, child, JobState.WAITING_FOR_PARENT_JOB, now)
            for name, path, size in outputs:
                self._replace_file(cur, transition.job.media_id, "output", name, path, size,
                                   now)
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
