"""The store's tokens and runners: registration tokens, the runners registered with them,
API tokens (a mixin of ``Store``, on its ``_interact``, ``_x`` and, for the hot lookup of a
runner by its token, the reactor thread's read connection and cache).

Every token is kept as its hash (``choir_protocol.runners.tokens``) and looked up by it:
the record a create or register gives back holds the token itself, for the only time.
"""
import secrets
import sqlite3
import uuid as uuidlib

import attrs
from twisted.internet import defer

from choir_protocol.runners import jobs as J
from choir_protocol.runners.jobs import JobError, JobState
from choir_protocol.runners.tokens import hash_token, token_prefix

from .records import (JOB_SELECT, RUNNER_SELECT, ApiToken, RegistrationToken, RunnerRecord,
                      job_from_row, runner_from_row)

RUNNER_TOKEN_PREFIX = "ptrt-"
REGISTRATION_TOKEN_PREFIX = "ptrrt-"
API_TOKEN_PREFIX = "choir-"
CONTACT_REFRESH = 30.0


class TokenQueries:
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
        """-> RunnerRecord, with its token; JobError 404 for an unknown/revoked token, 400 for a
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
            runner = RunnerRecord(str(uuidlib.uuid4()), name, description, version,
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
            known = self._x(cur, "SELECT 1 FROM runners WHERE id = ?", (runner_id,)).fetchone()
            self._remove_runner(cur, runner_id, now)
            return known is not None
        return self._interact(go)

    def _remove_runner(self, cur, runner_id, now) -> int:
        """Deletes a runner (the admin API's too); its processing jobs go back to pending. -> how many did."""
        rows = self._x(cur, JOB_SELECT + " WHERE runner_id = ? AND state = ?",
                       (runner_id, int(JobState.PROCESSING))).fetchall()
        for row in rows:
            tr = J.abort(job_from_row(row), now)
            self._save(cur, tr.job, tr.previous_state, now)
        self._x(cur, "UPDATE jobs SET runner_id = NULL WHERE runner_id = ?", (runner_id,))
        self._x(cur, "DELETE FROM runners WHERE id = ?", (runner_id,))
        return len(rows)

    def list_runners(self):
        return self._interact(lambda cur: [runner_from_row(r) for r in self._x(
            cur, self._RUNNER + " ORDER BY created_at").fetchall()])

    def runner_by_token(self, token, ip=None, now=None):
        """-> RunnerRecord, refreshing last_contact and ip at most every 30 s;
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
