"""Store: compare-and-set against the whole record, schema migrations, media publishing."""
import os
import sqlite3

from twisted.internet import defer
from twisted.trial import unittest

from choir_protocol.runners import jobs as J
from choir_protocol.runners.jobs import JobState, JobType
from choir_twisted.store.store import DB_NAME, SCHEMA_VERSION, StaleJob, Store

from ...support.daemon_process import until
from ...support.paths import temp_dir
from ...support.store import T0, StoreFixture, assertNotStored, stored_bytes

# the tables of version 4 that version 5 changes (tokens in clear), and those they name
VERSION_4_SCHEMA = """
    CREATE TABLE schema_version (version INTEGER NOT NULL);
    CREATE TABLE registration_tokens (token TEXT PRIMARY KEY, created_at REAL NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0, id TEXT);
    CREATE UNIQUE INDEX registration_tokens_id ON registration_tokens (id);
    CREATE TABLE runners (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, description TEXT,
        version TEXT, token TEXT NOT NULL UNIQUE,
        registration_token TEXT REFERENCES registration_tokens(token),
        ip TEXT, last_contact REAL, created_at REAL NOT NULL);
    CREATE TABLE media (id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL,
        path TEXT, probe TEXT, webhook TEXT, created_at REAL NOT NULL, ended_at REAL,
        webhook_sent_at REAL, webhook_error TEXT);
    CREATE TABLE api_tokens (token TEXT PRIMARY KEY, name TEXT NOT NULL,
        created_at REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE jobs (uuid TEXT PRIMARY KEY, type TEXT NOT NULL, state INTEGER NOT NULL,
        priority INTEGER NOT NULL, payload TEXT NOT NULL, private_payload TEXT NOT NULL,
        failures INTEGER NOT NULL DEFAULT 0, error TEXT, progress INTEGER,
        parent_uuid TEXT REFERENCES jobs(uuid) ON DELETE CASCADE,
        runner_id TEXT REFERENCES runners(id) ON DELETE SET NULL,
        job_token TEXT UNIQUE, media_id TEXT REFERENCES media(id) ON DELETE SET NULL,
        created_at REAL NOT NULL, updated_at REAL NOT NULL, started_at REAL,
        finished_at REAL);
    CREATE TABLE job_events (seq INTEGER PRIMARY KEY, job_uuid TEXT NOT NULL,
        state INTEGER NOT NULL, at REAL NOT NULL, origin TEXT);
"""


class StoreRaceTest(StoreFixture, unittest.TestCase):
    """Writes checked against the whole record they were computed from."""

    async def processing(self):
        runner = await self.runner()
        tr = await self.store.create_job(JobType.VOD_HLS, {}, now=T0)
        return runner, await self.store.accept(tr.job.uuid, runner.id, now=T0)

    async def test_the_watchdog_loses_to_an_update_made_after_it_looked(self):
        _, job = await self.processing()
        seen = job  # what the watchdog read
        await self.store.save(J.update(job, T0 + 100, 50), now=T0 + 100, previous=job)
        stalled = J.stalled(seen, T0 + 200)
        with self.assertRaises(StaleJob):
            await self.store.save(stalled, now=T0 + 200, previous=seen)
        now = await self.store.get_job(job.uuid)
        self.assertEqual((now.state, now.progress, now.job_token_hash),
                         (JobState.PROCESSING, 50, job.job_token_hash))

    async def test_a_late_update_cannot_bring_back_an_old_token(self):
        runner, job = await self.processing()
        await self.store.save(J.abort(job, T0 + 1), now=T0 + 1, previous=job)
        again = await self.store.accept(job.uuid, runner.id, now=T0 + 2)
        with self.assertRaises(StaleJob):  # computed from the first accept's record
            await self.store.save(J.update(job, T0 + 3, 10), now=T0 + 3, previous=job)
        self.assertEqual((await self.store.get_job(job.uuid)).job_token_hash,
                         again.job_token_hash)
        self.assertNotEqual(again.job_token_hash, job.job_token_hash)


class MigrationTest(unittest.TestCase):
    timeout = 30

    async def test_a_version_1_store_is_brought_up_to_date_keeping_its_rows(self):
        directory = temp_dir(self)
        path = os.path.join(directory, DB_NAME)
        db = sqlite3.connect(path)  # the schema as version 1 made it
        db.executescript("""
            CREATE TABLE schema_version (version INTEGER NOT NULL);
            INSERT INTO schema_version VALUES (1);
            CREATE TABLE media (id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL,
                path TEXT, probe TEXT, webhook TEXT, created_at REAL NOT NULL);
            INSERT INTO media VALUES ('m1', 'upload', 'old song', '/x.mp3', NULL, NULL, 1.0);
            CREATE TABLE job_events (seq INTEGER PRIMARY KEY, job_uuid TEXT NOT NULL,
                state INTEGER NOT NULL, at REAL NOT NULL);
            INSERT INTO job_events VALUES (7, 'j1', 1, 1.0);
        """)
        db.commit()
        db.close()
        store = await Store.open(path)
        self.addCleanup(store.close)
        media = await store.get_media("m1")
        self.assertEqual((media.name, media.ended_at, media.webhook_sent_at), ("old song", None, None))
        self.assertTrue(await store.mark_media_ended("m1", now=5.0))
        self.assertFalse(await store.mark_media_ended("m1", now=6.0))
        self.assertEqual((await store.get_media("m1")).ended_at, 5.0)
        version = await store.pool.runQuery("SELECT version FROM schema_version")
        self.assertEqual(version, [(SCHEMA_VERSION,)])
        # an event written before origins existed counts as another process's
        self.assertEqual(await store.changed_since(0, with_origin=True),
                         (7, [("j1", JobState.PENDING, True)]))

    async def test_a_version_3_store_gets_registration_token_ids_and_operator_tokens(self):
        import re
        directory = temp_dir(self)
        path = os.path.join(directory, DB_NAME)
        db = sqlite3.connect(path)  # the tables version 3 made that version 4 changes
        db.executescript("""
            CREATE TABLE schema_version (version INTEGER NOT NULL);
            INSERT INTO schema_version VALUES (3);
            CREATE TABLE registration_tokens (token TEXT PRIMARY KEY, created_at REAL NOT NULL,
                revoked INTEGER NOT NULL DEFAULT 0);
            INSERT INTO registration_tokens VALUES ('ptrrt-a', 1.0, 0), ('ptrrt-b', 2.0, 1);
            CREATE TABLE runners (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE,
                description TEXT, version TEXT, token TEXT NOT NULL UNIQUE,
                registration_token TEXT REFERENCES registration_tokens(token), ip TEXT,
                last_contact REAL, created_at REAL NOT NULL);
            INSERT INTO runners VALUES ('r1', 'gpu', NULL, NULL, 'ptrt-1', 'ptrrt-a', NULL,
                NULL, 1.0);
        """)
        db.commit()
        db.close()
        store = await Store.open(path)
        self.addCleanup(store.close)
        self.assertEqual(await store.pool.runQuery("SELECT version FROM schema_version"),
                         [(SCHEMA_VERSION,)])
        tokens = await store.list_registration_tokens(include_revoked=True)
        self.assertEqual([(t.prefix, t.revoked) for t in tokens],
                         [("ptrrt-a", False), ("ptrrt-b", True)])
        uuid4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
        for t in tokens:
            self.assertRegex(t.id, uuid4)
        self.assertNotEqual(tokens[0].id, tokens[1].id)
        with self.assertRaises(sqlite3.IntegrityError):  # the ids are unique
            await store.pool.runOperation("UPDATE registration_tokens SET id = ? "
                                          "WHERE id = ?", (tokens[0].id, tokens[1].id))
        # new tokens get one; a token's id removes it with its runners
        new = await store.create_registration_token(now=3.0)
        self.assertRegex(new.id, uuid4)
        self.assertEqual(await store.delete_registration_token(tokens[0].id, now=4.0), (1, 0))
        self.assertEqual(await store.list_runners(), [])
        # operator tokens, kept hashed
        record, secret = await store.create_operator_token("ops", now=5.0)
        self.assertTrue(secret.startswith("choir-op-"))
        rows = await store.pool.runQuery("SELECT name, token_hash, revoked FROM operator_tokens")
        self.assertEqual(len(rows), 1)
        self.assertEqual(rows[0][0], "ops")
        self.assertNotIn(secret, rows[0][1])
        self.assertEqual((await store.operator_by_token(secret, now=6.0)).last_used_at, 6.0)
        self.assertIsNone(await store.operator_by_token(secret + "x", now=6.0))
        # opening it again changes nothing
        store.close()
        store = await Store.open(path)
        self.addCleanup(store.close)
        self.assertEqual([t.id for t in await store.list_registration_tokens(True)],
                         [tokens[1].id, new.id])

    async def test_a_version_4_store_keeps_its_tokens_working_and_in_clear_nowhere(self):
        directory = temp_dir(self)
        path = os.path.join(directory, DB_NAME)
        old = {kind: f"{kind}-{os.urandom(16).hex()}" for kind in
               ("ptrrt", "ptrt", "ptrjt", "choir")}
        umask = os.umask(0o022)
        try:  # the files as version 4 left them, readable by all; its last writes still in
            # the WAL (a daemon that did not stop cleanly, or choir-admin in between)
            db = sqlite3.connect(path, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA wal_autocheckpoint=0")
            db.executescript(VERSION_4_SCHEMA + f"""
                INSERT INTO schema_version VALUES (4);
                INSERT INTO registration_tokens VALUES ('{old["ptrrt"]}', 1.0, 0, 'reg-1');
                INSERT INTO runners VALUES ('r1', 'gpu', NULL, '1.0', '{old["ptrt"]}',
                    '{old["ptrrt"]}', '10.0.0.1', NULL, 1.0);
                INSERT INTO api_tokens VALUES ('{old["choir"]}', 'web', 1.0, 0);
                INSERT INTO jobs (uuid, type, state, priority, payload, private_payload,
                    runner_id, job_token, created_at, updated_at, started_at)
                    VALUES ('j1', '{JobType.VOD_HLS}', 2, 100, '{{}}', '{{}}', 'r1',
                            '{old["ptrjt"]}', 1.0, 1.0, 1.0),
                           ('j2', '{JobType.VOD_HLS}', 1, 100, '{{}}', '{{}}', NULL, NULL,
                            1.0, 1.0, NULL);
            """)
        finally:
            os.umask(umask)
        self.addCleanup(db.close)
        for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm"):
            self.assertEqual(os.stat(os.path.join(directory, name)).st_mode & 0o777, 0o644)
        self.assertIn(old["ptrt"].encode(), stored_bytes(directory))

        store = await Store.open(path)
        self.addCleanup(store.close)
        for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm"):  # the owner's alone
            self.assertEqual(os.stat(os.path.join(directory, name)).st_mode & 0o777, 0o600,
                             name)
        self.assertEqual(await store.pool.runQuery("SELECT version FROM schema_version"),
                         [(SCHEMA_VERSION,)])
        for token in old.values():
            assertNotStored(self, directory, token, seen="10.0.0.1")

        # the runner keeps working with what it has: its token, its job's token
        runner = await store.runner_by_token(old["ptrt"], now=2.0)
        self.assertEqual((runner.id, runner.name), ("r1", "gpu"))
        job = await store.get_job("j1")
        self.assertIs(J.check_job_token(job, old["ptrjt"], "r1"), job)
        self.assertIsNone((await store.get_job("j2")).job_token_hash)
        self.assertTrue(await store.api_token_valid(old["choir"]))
        self.assertEqual([(t.name, t.prefix) for t in await store.list_api_tokens()],
                         [("web", old["choir"][:14])])
        self.assertEqual([(t.id, t.prefix) for t in await store.list_registration_tokens()],
                         [("reg-1", old["ptrrt"][:14])])
        self.assertEqual((await store.register_runner(old["ptrrt"], "cpu", now=3.0)).name,
                         "cpu")
        # the runners still belong to their registration token
        self.assertEqual(await store.delete_registration_token("reg-1", now=4.0), (2, 1))
        self.assertEqual(await store.list_runners(), [])
        self.assertEqual((await store.get_job("j1")).state, JobState.PENDING)

        # opening it again hashes nothing twice
        store.close()
        store = await Store.open(path)
        self.addCleanup(store.close)
        self.assertTrue(await store.api_token_valid(old["choir"]))

    async def test_a_store_that_cannot_be_opened_leaves_no_thread_behind(self):
        import threading
        directory = temp_dir(self)
        path = os.path.join(directory, DB_NAME)
        with open(path, "wb") as f:
            f.write(b"this is not a database" * 100)
        before = set(threading.enumerate())
        with self.assertRaises(sqlite3.DatabaseError):
            await Store.open(path)
        await until(lambda: not [t for t in set(threading.enumerate()) - before
                                 if t.is_alive() and not t.daemon], what="the pool's threads")

    async def test_a_newer_store_is_refused(self):
        directory = temp_dir(self)
        path = os.path.join(directory, DB_NAME)
        db = sqlite3.connect(path)
        db.executescript(f"CREATE TABLE schema_version (version INTEGER NOT NULL);"
                         f"INSERT INTO schema_version VALUES ({SCHEMA_VERSION + 1});")
        db.commit()
        db.close()
        store = Store.sqlite(path)
        self.addCleanup(store.close)
        with self.assertRaisesRegex(RuntimeError, "newer"):
            await store.create_schema()


class PublishMediaTest(unittest.TestCase):
    timeout = 30

    async def test_media_files_and_jobs_in_one_transaction(self):
        directory = temp_dir(self)
        store = await Store.open(data_dir=directory)
        self.addCleanup(store.close)
        source = os.path.join(directory, "a.flac")
        with open(source, "wb") as f:
            f.write(b"x" * 10)
        bad = [dict(type=JobType.VOD_HLS, payload={}, parent_uuid="missing")]
        with self.assertRaises(J.JobError):
            await store.publish_media("upload", "a", source, [source], bad)
        self.assertEqual(await store.list_media(), [])  # rolled back whole
        media, transitions = await store.publish_media(
            "upload", "a", source, [source], [dict(type=JobType.VOD_HLS, payload={})])
        self.assertEqual([f.size for f in await store.media_files(media.id, "input")], [10])
        self.assertEqual([j.uuid for j in await store.media_jobs(media.id)],
                         [transitions[0].job.uuid])
        self.assertEqual(await store.media_by_path(source), media)


OPEN_AT_ONCE = """
import os, sys, time
from twisted.internet import defer, task
from choir_twisted.store.store import Store
go = sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.001)
async def main(reactor):
    store = await Store.open(data_dir=sys.argv[1])
    print(await store.journal_mode())
    store.close()
task.react(lambda r: defer.ensureDeferred(main(r)))
"""


class ConcurrentOpenTest(unittest.TestCase):
    timeout = 120

    def test_processes_opening_a_new_store_at_once_all_open_it(self):
        # the daemon starting while choir-admin opens the same new store
        import subprocess
        import sys
        for _ in range(3):
            directory = temp_dir(self)
            go = os.path.join(directory, "go")
            processes = [subprocess.Popen([sys.executable, "-c", OPEN_AT_ONCE, directory, go],
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True) for _ in range(4)]
            open(go, "w").close()
            for p in processes:
                out, err = p.communicate(timeout=60)
                self.assertEqual((p.returncode, out.strip()), (0, "wal"), err[-2000:])

    async def test_stores_opening_an_old_store_at_once_hash_its_tokens_once(self):
        # the daemon and choir-admin opening a version 4 store together: one migrates,
        # holding the write lock from its first read, and the other finds version 5 (a
        # token hashed twice would lock its runner out)
        from twisted.internet import reactor, task
        directory = temp_dir(self)
        path = os.path.join(directory, DB_NAME)
        token = "ptrt-" + os.urandom(16).hex()
        db = sqlite3.connect(path, isolation_level=None)
        self.addCleanup(db.close)
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(VERSION_4_SCHEMA + f"""
            INSERT INTO schema_version VALUES (4);
            INSERT INTO runners VALUES ('r1', 'gpu', NULL, NULL, '{token}', NULL, NULL,
                NULL, 1.0);
        """)
        db.execute("BEGIN IMMEDIATE")  # a writer in the way: both opens wait on it
        def opened(store):
            self.addCleanup(store.close)  # whatever the other one does
            return store
        opening = [defer.ensureDeferred(Store.open(path)).addCallback(opened)
                   for _ in range(2)]
        await task.deferLater(reactor, 0.3, lambda: None)
        db.execute("COMMIT")
        for store in await defer.gatherResults(opening, consumeErrors=True):
            self.assertEqual((await store.runner_by_token(token)).id, "r1")
