"""The store's tables, and the migrations that bring an older store up to them.

``Store.create_schema`` runs, in one transaction: the migrations from the store's version
up, then ``SCHEMA`` (every statement is IF NOT EXISTS: a fresh store gets its tables, a
migrated one what the migrations did not make). A migration step is an SQL statement, or
a function ``step(store, cursor)`` for what SQL alone cannot do (hashing tokens).
"""
from choir_protocol.runners.tokens import hash_token, token_prefix

SCHEMA_VERSION = 5

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
    # every token column holds the token's sha256 hex (choir_protocol.runners.tokens): the token
    # itself is shown once, when it is made; prefixes tell tokens apart in listings
    """CREATE TABLE IF NOT EXISTS registration_tokens (
        token_hash TEXT PRIMARY KEY, created_at REAL NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0, id TEXT, token_prefix TEXT)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS registration_tokens_id ON registration_tokens (id)",
    """CREATE TABLE IF NOT EXISTS runners (
        id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, description TEXT, version TEXT,
        token_hash TEXT NOT NULL UNIQUE,
        registration_token_hash TEXT REFERENCES registration_tokens(token_hash),
        ip TEXT, last_contact REAL, created_at REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS media (
        id TEXT PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('recording', 'upload')),
        name TEXT NOT NULL, path TEXT, probe TEXT, webhook TEXT, created_at REAL NOT NULL,
        ended_at REAL, webhook_sent_at REAL, webhook_error TEXT)""",
    "CREATE INDEX IF NOT EXISTS media_path ON media (path)",
    """CREATE TABLE IF NOT EXISTS api_tokens (
        token_hash TEXT PRIMARY KEY, name TEXT NOT NULL, created_at REAL NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0, token_prefix TEXT)""",
    """CREATE TABLE IF NOT EXISTS media_files (
        id TEXT PRIMARY KEY, media_id TEXT NOT NULL REFERENCES media(id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('input', 'output')), name TEXT NOT NULL,
        path TEXT NOT NULL, size INTEGER, created_at REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS jobs (
        uuid TEXT PRIMARY KEY, type TEXT NOT NULL, state INTEGER NOT NULL,
        priority INTEGER NOT NULL, payload TEXT NOT NULL, private_payload TEXT NOT NULL,
        failures INTEGER NOT NULL DEFAULT 0, error TEXT, progress INTEGER,
        parent_uuid TEXT REFERENCES jobs(uuid) ON DELETE CASCADE,
        runner_id TEXT REFERENCES runners(id) ON DELETE SET NULL,
        job_token_hash TEXT UNIQUE, media_id TEXT REFERENCES media(id) ON DELETE SET NULL,
        created_at REAL NOT NULL, updated_at REAL NOT NULL, started_at REAL,
        finished_at REAL)""",
    "CREATE INDEX IF NOT EXISTS jobs_pending ON jobs (state, priority, created_at)",
    "CREATE INDEX IF NOT EXISTS jobs_parent ON jobs (parent_uuid)",
    # seq: SQLite's rowid; a PostgreSQL schema says GENERATED ALWAYS AS IDENTITY.
    """CREATE TABLE IF NOT EXISTS job_events (
        seq INTEGER PRIMARY KEY, job_uuid TEXT NOT NULL, state INTEGER NOT NULL,
        at REAL NOT NULL, origin TEXT)""",
    """CREATE TABLE IF NOT EXISTS operator_tokens (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL, last_used_at REAL, revoked INTEGER NOT NULL DEFAULT 0)""",
]

# the token columns version 5 hashes: table -> [(column before, column now)]
_TOKEN_COLUMNS = {
    "registration_tokens": [("token", "token_hash")],
    "runners": [("token", "token_hash"), ("registration_token", "registration_token_hash")],
    "api_tokens": [("token", "token_hash")],
    "jobs": [("job_token", "job_token_hash")],
}


def hash_tokens_at_rest(store, cur):
    """Version 5: every token kept in clear becomes its hash, in place (a runner keeps
    working with the token it has), and registration and API tokens get their prefixes.
    Tables a store that old did not have yet are made by SCHEMA afterwards."""
    # the clear values' bytes are zeroed, not merely freed (SQLite keeps freed cells'
    # bytes otherwise); the store's copy of them in the WAL goes at the checkpoint that
    # follows (``Store.create_schema``)
    cur.execute("PRAGMA secure_delete=ON")
    # a runner names its registration token by the token's (new) hash: the two are
    # rewritten one after the other, consistent again at the commit
    # (PostgreSQL: SET CONSTRAINTS ALL DEFERRED)
    cur.execute("PRAGMA defer_foreign_keys=ON")
    present = [t for t in _TOKEN_COLUMNS if store._has_table(cur, t)]
    for table in present:
        for before, now in _TOKEN_COLUMNS[table]:
            cur.execute(f"ALTER TABLE {table} RENAME COLUMN {before} TO {now}")
    for table in ("registration_tokens", "api_tokens"):
        if table in present:
            cur.execute(f"ALTER TABLE {table} ADD COLUMN token_prefix TEXT")
            for (token,) in store._x(cur, f"SELECT token_hash FROM {table}").fetchall():
                store._x(cur, f"UPDATE {table} SET token_hash = ?, token_prefix = ? "
                              f"WHERE token_hash = ?",
                         (hash_token(token), token_prefix(token), token))
    if "runners" in present:
        rows = store._x(cur, "SELECT id, token_hash, registration_token_hash "
                             "FROM runners").fetchall()
        for runner_id, token, registered_with in rows:
            store._x(cur, "UPDATE runners SET token_hash = ?, registration_token_hash = ? "
                          "WHERE id = ?",
                     (hash_token(token), registered_with and hash_token(registered_with),
                      runner_id))
    if "jobs" in present:
        rows = store._x(cur, "SELECT uuid, job_token_hash FROM jobs "
                             "WHERE job_token_hash IS NOT NULL").fetchall()
        for uuid, token in rows:
            store._x(cur, "UPDATE jobs SET job_token_hash = ? WHERE uuid = ?",
                     (hash_token(token), uuid))


# (version, steps) that bring a store of the version before up to it
MIGRATIONS = [
    (2, ["ALTER TABLE media ADD COLUMN ended_at REAL",
         "ALTER TABLE media ADD COLUMN webhook_sent_at REAL",
         "ALTER TABLE media ADD COLUMN webhook_error TEXT"]),
    (3, ["ALTER TABLE job_events ADD COLUMN origin TEXT"]),
    # registration tokens get an id (PeerTube's admin API names them by it); a store made
    # before the table existed gets it in its old shape first, for the ALTER to find it.
    # The filled-in ids are random uuid4s, as Python makes them.
    (4, ["""CREATE TABLE IF NOT EXISTS registration_tokens (
            token TEXT PRIMARY KEY, created_at REAL NOT NULL,
            revoked INTEGER NOT NULL DEFAULT 0)""",
         "ALTER TABLE registration_tokens ADD COLUMN id TEXT",
         """UPDATE registration_tokens SET id = lower(hex(randomblob(4)) || '-' ||
            hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' ||
            substr('89ab', 1 + abs(random()) % 4, 1) || substr(hex(randomblob(2)), 2) || '-' ||
            hex(randomblob(6))) WHERE id IS NULL"""]),
    (5, [hash_tokens_at_rest]),
]


def migrate(store, cur, version) -> bool:
    """Runs the steps that bring a store of ``version`` up to SCHEMA_VERSION, in the
    caller's transaction. -> whether any ran."""
    steps = [step for target, steps in MIGRATIONS if version < target for step in steps]
    for step in steps:
        if callable(step):
            step(store, cur)
        else:
            cur.execute(step)
    return bool(steps)
