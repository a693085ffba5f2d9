"""The store's queries for operators: operator tokens and the pages of the admin API.

A mixin of ``Store``: it runs on the store's ``_interact`` (the pool), ``_read`` (the
reactor thread's read connection) and ``_x`` (placeholders). Operator tokens, like every
token, are kept as the sha256 hex of the token (``choir_protocol.runners.tokens``): the token
itself is shown once, when it is made, so a copy of the database does not give admin
access. Pages are ``Page(total, items)``, sorted on a
whitelisted column (PeerTube's sortable columns), then by id for a stable order.
"""
import secrets
import uuid as uuidlib

import attrs
from twisted.internet import defer

from choir_protocol.runners.tokens import hash_token

from .records import JOB_SELECT, RegistrationToken, job_from_row, runner_from_row

OPERATOR_TOKEN_PREFIX = "choir-op-"
TOKEN_REFRESH = 30.0  # last_used_at is written at most this often per token

# the sort keys of PeerTube's admin lists -> our columns
RUNNER_SORTS = {"createdAt": "created_at"}
REGISTRATION_TOKEN_SORTS = {"createdAt": "created_at"}
JOB_SORTS = {"createdAt": "created_at", "updatedAt": "updated_at", "priority": "priority",
             "state": "state", "progress": "progress"}


@attrs.frozen
class OperatorToken:
    id: str
    name: str
    created_at: float
    last_used_at: float | None
    revoked: bool


@attrs.frozen
class Page:
    total: int
    items: list



def _order(sorts: dict, sort: str, descending: bool, tie: str) -> str:
    if sort not in sorts.values():
        raise ValueError(f"cannot sort on {sort!r}")
    return f" ORDER BY {sort} {'DESC' if descending else 'ASC'}, {tie}"


def _limit(start: int, count: int) -> str:
    return f" LIMIT {int(count)} OFFSET {int(start)}"


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


_OPERATOR = "SELECT id, name, created_at, last_used_at, revoked FROM operator_tokens"


def _operator(row) -> OperatorToken:
    i, n, c, u, r = row
    return OperatorToken(i, n, c, u, bool(r))


class OperatorQueries:
    # -- operator tokens -------------------------------------------------------------------

    def create_operator_token(self, name, now=None):
        """-> (OperatorToken, the token): the only time the token is seen."""
        token = OPERATOR_TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = OperatorToken(str(uuidlib.uuid4()), name,
                               self.clock() if now is None else now, None, False)
        return self._interact(lambda cur: (self._x(
            cur, "INSERT INTO operator_tokens (id, name, token_hash, created_at, revoked) "
                 "VALUES (?, ?, ?, ?, 0)",
            (record.id, name, hash_token(token), record.created_at)), (record, token))[1])

    def list_operator_tokens(self, include_revoked=False):
        sql = _OPERATOR + ("" if include_revoked else " WHERE revoked = 0")
        return self._interact(lambda cur: [
            _operator(r) for r in self._x(cur, sql + " ORDER BY created_at, id").fetchall()])

    def revoke_operator_token(self, token_id):
        """True when a live token was revoked."""
        return self._interact(lambda cur: self._x(
            cur, "UPDATE operator_tokens SET revoked = 1 WHERE id = ? AND revoked = 0",
            (token_id,)).rowcount == 1)

    def operator_by_token(self, token, now=None):
        """-> the OperatorToken (revoked ones too: the caller refuses them), or None for an
        unknown token. A live token's last_used_at is refreshed (every TOKEN_REFRESH s)."""
        now = self.clock() if now is None else now
        digest = hash_token(token)

        async def go():
            row = await self._read(lambda cur: self._x(
                cur, _OPERATOR + " WHERE token_hash = ?", (digest,)).fetchone())
            if row is None:
                return None
            record = _operator(row)
            if not record.revoked and (record.last_used_at is None
                                       or now - record.last_used_at >= TOKEN_REFRESH):
                await self._interact(lambda cur: self._x(
                    cur, "UPDATE operator_tokens SET last_used_at = ? WHERE id = ?",
                    (now, record.id)))
                record = attrs.evolve(record, last_used_at=now)
            return record
        return defer.ensureDeferred(go())

    # -- runners and registration tokens ---------------------------------------------------

    def runners_page(self, start=0, count=15, sort="created_at", descending=False):
        def go(cur):
            total = self._x(cur, "SELECT COUNT(*) FROM runners").fetchone()[0]
            rows = self._x(cur, self._RUNNER + _order(RUNNER_SORTS, sort, descending, "id")
                           + _limit(start, count)).fetchall()
            return Page(total, [runner_from_row(r) for r in rows])
        return self._interact(go)

    def runners_by_id(self, ids):
        """-> {id: RunnerRecord} of those that exist."""
        ids = sorted(set(i for i in ids if i is not None))
        if not ids:
            return defer.succeed({})
        return self._interact(lambda cur: {r[0]: runner_from_row(r) for r in self._x(
            cur, self._RUNNER + f" WHERE id IN ({', '.join('?' * len(ids))})", ids).fetchall()})

    def registration_tokens_page(self, start=0, count=15, sort="created_at", descending=False,
                                 include_revoked=False):
        """-> Page of (RegistrationToken, number of runners registered with it)."""
        where = "" if include_revoked else " WHERE revoked = 0"

        def go(cur):
            total = self._x(cur, "SELECT COUNT(*) FROM registration_tokens" + where).fetchone()[0]
            rows = self._x(
                cur, "SELECT created_at, revoked, id, token_prefix, token_hash, "
                     "(SELECT COUNT(*) FROM runners WHERE runners.registration_token_hash "
                     "= registration_tokens.token_hash) FROM registration_tokens" + where
                + _order(REGISTRATION_TOKEN_SORTS, sort, descending, "id")
                + _limit(start, count)).fetchall()
            return Page(total, [(RegistrationToken(None, c, bool(r), i, p, h), n)
                                for c, r, i, p, h, n in rows])
        return self._interact(go)

    def revoke_registration_token_id(self, token_id):
        """True when a live token was revoked (None: no such token)."""
        def go(cur):
            row = self._x(cur, "SELECT revoked FROM registration_tokens WHERE id = ?",
                          (token_id,)).fetchone()
            if row is None:
                return None
            return self._x(cur, "UPDATE registration_tokens SET revoked = 1 "
                                "WHERE id = ? AND revoked = 0", (token_id,)).rowcount == 1
        return self._interact(go)

    def remove_runner(self, runner_id, now=None):
        """-> how many of its jobs went back to pending; None: no such runner."""
        now = self.clock() if now is None else now

        def go(cur):
            if self._x(cur, "SELECT 1 FROM runners WHERE id = ?", (runner_id,)).fetchone() is None:
                return None
            return self._remove_runner(cur, runner_id, now)
        return self._interact(go)

    def delete_registration_token(self, token_id, now=None):
        """PeerTube's delete: the token and the runners registered with it (their processing
        jobs back to pending), in one transaction. -> (runners removed, jobs requeued);
        None: no such token."""
        now = self.clock() if now is None else now

        def go(cur):
            row = self._x(cur, "SELECT token_hash FROM registration_tokens WHERE id = ?",
                          (token_id,)).fetchone()
            if row is None:
                return None
            runners = [r[0] for r in self._x(
                cur, "SELECT id FROM runners WHERE registration_token_hash = ?",
                row).fetchall()]
            requeued = sum(self._remove_runner(cur, r, now) for r in runners)
            self._x(cur, "DELETE FROM registration_tokens WHERE id = ?", (token_id,))
            return len(runners), requeued
        return self._interact(go)

    # -- jobs ------------------------------------------------------------------------------

    def jobs_page(self, start=0, count=15, sort="created_at", descending=False, search=None,
                  states=None, types=None):
        """``search``: a case-insensitive substring of the uuid, the type or the name of
        the job's runner."""
        where, args = [], []
        if search:
            where.append("(lower(uuid) LIKE ? ESCAPE '\\' OR lower(type) LIKE ? ESCAPE '\\'"
                         " OR runner_id IN (SELECT id FROM runners "
                         "WHERE lower(name) LIKE ? ESCAPE '\\'))")
            args += [_like(search)] * 3
        more_where, more_args = self._job_conditions(states, types)
        where, args = where + more_where, args + more_args
        clause = " WHERE " + " AND ".join(where) if where else ""

        def go(cur):
            total = self._x(cur, "SELECT COUNT(*) FROM jobs" + clause, args).fetchone()[0]
            rows = self._x(cur, JOB_SELECT + clause
                           + _order(JOB_SORTS, sort, descending, "uuid")
                           + _limit(start, count), args).fetchall()
            return Page(total, [job_from_row(r) for r in rows])
        return self._interact(go)

    def jobs_by_uuid(self, uuids):
        """-> {uuid: Job} of those that exist."""
        uuids = sorted(set(u for u in uuids if u is not None))
        if not uuids:
            return defer.succeed({})
        return self._interact(lambda cur: {j.uuid: j for j in map(job_from_row, self._x(
            cur, JOB_SELECT + f" WHERE uuid IN ({', '.join('?' * len(uuids))})",
            uuids).fetchall())})
