"""The SQLite store on adbapi: a real file in a temporary directory."""
import os

from twisted.internet import defer
from twisted.trial import unittest

from choir_protocol.runners import jobs as J
from choir_protocol.runners.jobs import JobError, JobState, JobType
from choir_protocol.runners.tokens import hash_token, token_prefix
from choir_twisted.store.store import DB_NAME, StaleJob, Store

from ...support.store import T0, StoreFixture, assertNotStored


class StoreTest(StoreFixture, unittest.TestCase):
    async def test_file_wal_and_reopen(self):
        path = os.path.join(self.dir, DB_NAME)
        self.assertTrue(os.path.exists(path))
        self.assertEqual((await self.store.journal_mode()).lower(), "wal")
        tr = await self.store.create_job(JobType.VOD_HLS, {"a": [1]}, private_payload={"p": 1},
                                         now=T0)
        self.store.close()
        again = await Store.open(path)
        self.addCleanup(again.close)
        job = await again.get_job(tr.job.uuid)
        self.assertEqual(job, tr.job)
        self.assertEqual(job.payload, {"a": [1]})

    async def test_registration_tokens_and_runners(self):
        tok = await self.store.create_registration_token(now=T0)
        self.assertEqual([(t.id, t.token, t.prefix)
                          for t in await self.store.list_registration_tokens()],
                         [(tok.id, None, token_prefix(tok.token))])  # shown once
        r = await self.store.register_runner(tok.token, "r1", ip="10.0.0.1", now=T0)
        self.assertTrue(r.token.startswith("ptrt-"))
        with self.assertRaises(JobError) as e:
            await self.store.register_runner(tok.token, "r1", now=T0)
        self.assertEqual((e.exception.status, e.exception.code), (400, "runner_name_already_taken"))
        self.assertTrue(await self.store.revoke_registration_token(tok.token))
        self.assertEqual(await self.store.list_registration_tokens(), [])
        with self.assertRaises(JobError) as e:
            await self.store.register_runner(tok.token, "r2", now=T0)
        self.assertEqual(e.exception.status, 404)
        # the runner registered before the revocation still works
        got = await self.store.runner_by_token(r.token, "10.0.0.2", now=T0 + 10)
        self.assertEqual((got.last_contact, got.ip), (T0, "10.0.0.1"))  # < 30 s: no refresh
        got = await self.store.runner_by_token(r.token, "10.0.0.2", now=T0 + 31)
        self.assertEqual((got.last_contact, got.ip), (T0 + 31, "10.0.0.2"))
        self.assertTrue(await self.store.unregister_runner(r.id))
        with self.assertRaises(JobError) as e:
            await self.store.runner_by_token(r.token)
        self.assertEqual(e.exception.code, "unknown_runner_token")

    async def test_pending_order_and_type_filter(self):
        s = self.store
        a = await s.create_job(JobType.VOD_HLS, {}, priority=100, now=T0)
        b = await s.create_job(JobType.VOD_WEB_VIDEO, {}, priority=50, now=T0 + 1)
        c = await s.create_job(JobType.VOD_HLS, {}, priority=100, now=T0 + 2)
        d = await s.create_job(JobType.VOD_HLS, {}, priority=10, now=T0 + 3,
                               parent_uuid=a.job.uuid)  # waiting: never offered
        self.assertEqual(d.job.state, JobState.WAITING_FOR_PARENT_JOB)
        uuids = [j.uuid for j in await s.pending_jobs()]
        self.assertEqual(uuids, [b.job.uuid, a.job.uuid, c.job.uuid])
        hls = [j.uuid for j in await s.pending_jobs([JobType.VOD_HLS])]
        self.assertEqual(hls, [a.job.uuid, c.job.uuid])
        self.assertEqual(len(await s.pending_jobs(limit=1)), 1)
        listed = await s.list_jobs(states=[JobState.WAITING_FOR_PARENT_JOB])
        self.assertEqual([j.uuid for j in listed], [d.job.uuid])
        self.assertEqual(len(await s.list_jobs(types=[JobType.VOD_WEB_VIDEO])), 1)

    async def test_two_concurrent_accepts_one_wins(self):
        r1, r2 = await self.runner("r1"), await self.runner("r2")
        tr = await self.store.create_job(JobType.VOD_HLS, {}, now=T0)
        other = await Store.open(os.path.join(self.dir, DB_NAME))  # another pool/process
        self.addCleanup(other.close)
        results = await defer.DeferredList(
            [self.store.accept(tr.job.uuid, r1.id, now=T0 + 1),
             other.accept(tr.job.uuid, r2.id, now=T0 + 1)], consumeErrors=True)
        wins = [v for ok, v in results if ok]
        losses = [v.value for ok, v in results if not ok]
        self.assertEqual(len(wins), 1)
        self.assertEqual(losses[0].code, "runner_job_not_in_pending_state")
        self.assertTrue(wins[0].job_token.startswith("ptrjt-"))
        stored = await self.store.get_job(tr.job.uuid)
        self.assertEqual((stored.state, stored.job_token, stored.job_token_hash),
                         (JobState.PROCESSING, None, hash_token(wins[0].job_token)))

    async def test_stale_record_cannot_be_saved(self):
        r = await self.runner()
        tr = await self.store.create_job(JobType.VOD_HLS, {}, now=T0)
        await self.store.accept(tr.job.uuid, r.id, now=T0 + 1)  # someone else got it
        with self.assertRaises(StaleJob):  # a transition computed on the pending record
            await self.store.save(J.accept(tr.job, r.id, "ptrjt-x", T0 + 2))
        with self.assertRaises(JobError) as e:
            await self.store.accept(tr.job.uuid, r.id, now=T0 + 3)
        self.assertEqual(e.exception.status, 409)

    async def test_children_released_on_success_and_events(self):
        s = self.store
        r = await self.runner()
        seq0 = await s.last_event()
        parent = await s.create_job(JobType.VOD_WEB_VIDEO, {}, now=T0)
        kid = await s.create_job(JobType.VOD_HLS, {}, parent_uuid=parent.job.uuid, now=T0)
        job = await s.accept(parent.job.uuid, r.id, now=T0 + 1)
        kids = await s.children(job.uuid)
        self.assertEqual([k.uuid for k in kids], [kid.job.uuid])
        tr = J.success(job, T0 + 2, kids)
        await s.save(tr)
        self.assertEqual((await s.get_job(kid.job.uuid)).state, JobState.PENDING)
        self.assertEqual((await s.get_job(job.uuid)).state, JobState.COMPLETED)
        with self.assertRaises(StaleJob):  # the same transition twice: optimistic check
            await s.save(tr)
        seq, changes = await s.changed_since(seq0)
        self.assertEqual(seq, await s.last_event())
        self.assertEqual(changes[-1], (kid.job.uuid, JobState.PENDING))
        self.assertEqual(await s.changed_since(seq), (seq, []))

    async def test_stalled_detection(self):
        s = self.store
        r = await self.runner()
        tr = await s.create_job(JobType.VOD_HLS, {}, now=T0)
        live = await s.create_job(JobType.LIVE_RTMP_HLS, {}, now=T0)
        await s.accept(tr.job.uuid, r.id, now=T0)
        await s.accept(live.job.uuid, r.id, now=T0)
        self.assertEqual(await s.stalled_jobs(now=T0 + 20), [])
        self.assertEqual([j.uuid for j in await s.stalled_jobs(now=T0 + 60)], [live.job.uuid])
        stalled = await s.stalled_jobs(now=T0 + 121)
        self.assertEqual(len(stalled), 2)
        for job in stalled:
            await s.save(J.stalled(job, T0 + 121))
        self.assertEqual(len(await s.pending_jobs()), 2)

    async def test_media_and_files(self):
        s = self.store
        m = await s.create_media("recording", "take 1", "/data/take1", now=T0)
        await s.update_media(m.id, probe={"width": 1920})
        self.assertEqual((await s.get_media(m.id)).probe, {"width": 1920})
        f = await s.add_media_file(m.id, "input", "take1.flac", "/data/take1.flac", 123, now=T0)
        await s.add_media_file(m.id, "output", "720.mp4", "/data/720.mp4", now=T0 + 1)
        self.assertEqual(await s.media_files(m.id, "input"), [f])
        self.assertEqual(len(await s.media_files(m.id)), 2)
        self.assertEqual([x.id for x in await s.list_media()], [m.id])
        self.assertTrue(await s.delete_media(m.id))
        self.assertEqual(await s.media_files(m.id), [])  # ON DELETE CASCADE: foreign keys on

    # -- the reactor thread's reads and their caches (PRAGMA data_version) --

    async def other_process(self):
        other = await Store.open(os.path.join(self.dir, DB_NAME))  # another pool/process
        self.addCleanup(other.close)
        return other

    async def test_a_runner_removed_by_another_process_is_refused_at_once(self):
        r = await self.runner()
        for _ in range(2):  # read, then answered from the cache
            self.assertEqual((await self.store.runner_by_token(r.token, now=T0 + 1)).id, r.id)
        other = await self.other_process()
        self.assertTrue(await other.unregister_runner(r.id))
        with self.assertRaises(JobError) as e:
            await self.store.runner_by_token(r.token, now=T0 + 2)
        self.assertEqual(e.exception.code, "unknown_runner_token")

    async def test_a_cached_runner_still_has_its_contact_refreshed(self):
        r = await self.runner()
        await self.store.runner_by_token(r.token, "10.0.0.2", now=T0 + 10)  # cached, no refresh
        got = await self.store.runner_by_token(r.token, "10.0.0.2", now=T0 + 31)
        self.assertEqual((got.last_contact, got.ip), (T0 + 31, "10.0.0.2"))
        [listed] = await (await self.other_process()).list_runners()
        self.assertEqual((listed.last_contact, listed.ip), (T0 + 31, "10.0.0.2"))

    async def test_pending_jobs_follow_other_processes_at_once(self):
        self.assertEqual(await self.store.pending_jobs(), [])  # cached empty
        other = await self.other_process()
        tr = await other.create_job(JobType.VOD_HLS, {}, now=T0)
        self.assertEqual([j.uuid for j in await self.store.pending_jobs()], [tr.job.uuid])
        self.assertEqual(await self.store.pending_jobs([JobType.VOD_WEB_VIDEO]), [])
        r = await self.runner()
        await other.accept(tr.job.uuid, r.id, now=T0 + 1)
        self.assertEqual(await self.store.pending_jobs(), [])
        self.assertEqual((await self.store.get_job(tr.job.uuid)).state, JobState.PROCESSING)

    async def test_pending_jobs_follow_the_stores_own_writes(self):
        tr = await self.store.create_job(JobType.VOD_HLS, {}, now=T0)
        self.assertEqual([j.uuid for j in await self.store.pending_jobs()], [tr.job.uuid])
        r = await self.runner()
        await self.store.accept(tr.job.uuid, r.id, now=T0 + 1)
        self.assertEqual(await self.store.pending_jobs(), [])

    async def test_the_data_version_moves_with_every_commit(self):
        before = self.store.data_version()
        self.assertIsNotNone(before)
        self.assertEqual(self.store.data_version(), before)
        await (await self.other_process()).create_job(JobType.VOD_HLS, {}, now=T0)
        after = self.store.data_version()
        self.assertNotEqual(after, before)
        await self.store.create_job(JobType.VOD_HLS, {}, now=T0)
        self.assertNotEqual(self.store.data_version(), after)

    async def test_only_the_reactors_thread_uses_the_read_connection(self):
        from twisted.internet import threads
        tr = await self.store.create_job(JobType.VOD_HLS, {}, now=T0)
        self.assertIsNone(await threads.deferToThread(self.store._reader_conn))
        self.assertIsNotNone(self.store._reader_conn())
        self.assertEqual((await self.store.get_job(tr.job.uuid)).uuid, tr.job.uuid)
        self.store.close()
        self.assertIsNone(self.store._reader_conn())  # closed: nothing is reopened


class TokensAtRestTest(StoreFixture, unittest.TestCase):
    """Each kind of token works, shown once, and is nowhere in the store's files."""

    async def checkpointed(self):
        await self.store.pool.runQuery("PRAGMA wal_checkpoint(PASSIVE)")
        return self.dir

    async def test_no_token_is_kept_in_clear(self):
        reg = await self.store.create_registration_token(now=T0)
        runner = await self.store.register_runner(reg.token, "r1", now=T0)
        tr = await self.store.create_job(JobType.VOD_HLS, {}, now=T0)
        job = await self.store.accept(tr.job.uuid, runner.id, now=T0 + 1)
        api = await self.store.create_api_token("website-uploads", now=T0)
        operator, operator_token = await self.store.create_operator_token("ops", now=T0)
        tokens = [reg.token, runner.token, job.job_token, api.token, operator_token]
        self.assertEqual([t.split("-")[0] for t in tokens],
                         ["ptrrt", "ptrt", "ptrjt", "choir", "choir"])
        directory = await self.checkpointed()
        for token in tokens:
            assertNotStored(self, directory, token, seen="website-uploads")

        # each one still authenticates, looked up by its hash
        self.assertEqual((await self.store.runner_by_token(runner.token, now=T0 + 2)).id,
                         runner.id)
        stored = await self.store.get_job(job.uuid)
        self.assertIs(J.check_job_token(stored, job.job_token, runner.id), stored)
        self.assertTrue(await self.store.api_token_valid(api.token))
        self.assertEqual((await self.store.operator_by_token(operator_token, now=T0)).id,
                         operator.id)
        self.assertEqual((await self.store.register_runner(reg.token, "r2", now=T0)).name, "r2")

        # a copy of the store gives only hashes, and a hash is not a token
        with self.assertRaises(JobError) as e:
            await self.store.runner_by_token(hash_token(runner.token))
        self.assertEqual(e.exception.code, "unknown_runner_token")
        with self.assertRaises(JobError):
            J.check_job_token(stored, stored.job_token_hash, runner.id)
        self.assertFalse(await self.store.api_token_valid(hash_token(api.token)))
        self.assertIsNone(await self.store.operator_by_token(hash_token(operator_token)))
        with self.assertRaises(JobError) as e:
            await self.store.register_runner(hash_token(reg.token), "r3")
        self.assertEqual(e.exception.code, "unknown_registration_token")

        # listings tell tokens apart by a prefix, and never give the token again
        [listed] = await self.store.list_registration_tokens()
        self.assertEqual((listed.token, listed.prefix), (None, reg.token[:14]))
        [listed] = await self.store.list_api_tokens()
        self.assertEqual((listed.token, listed.prefix, listed.name),
                         (None, api.token[:14], "website-uploads"))
        self.assertEqual({r.token for r in await self.store.list_runners()}, {None})
        self.assertIsNone((await self.store.runner_by_token(runner.token)).token)
        self.assertIsNone(stored.job_token)

        # revoking works by the token as before, and by the hash a listing gives
        self.assertTrue(await self.store.revoke_api_token_hash(listed.token_hash))
        self.assertFalse(await self.store.api_token_valid(api.token))
        self.assertFalse(await self.store.revoke_api_token(api.token))
        self.assertTrue(await self.store.revoke_registration_token(reg.token))
        with self.assertRaises(JobError):
            await self.store.register_runner(reg.token, "r4")

    async def test_a_runner_is_told_apart_from_its_registration_token(self):
        reg = await self.store.create_registration_token(now=T0)
        runner = await self.store.register_runner(reg.token, "r1", now=T0)
        [listed] = await self.store.list_runners()
        self.assertEqual(listed.registration_token_hash, hash_token(reg.token))
        [(token, count)] = (await self.store.registration_tokens_page()).items
        self.assertEqual((token.id, count), (reg.id, 1))
        self.assertEqual(await self.store.delete_registration_token(reg.id, now=T0), (1, 0))
        with self.assertRaises(JobError):
            await self.store.runner_by_token(runner.token)
