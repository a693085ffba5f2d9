"""The SQLite store for the tests: one in a temporary directory for a trial TestCase, what
it keeps on disk, and jobs in every state."""
import os
import time

from choir_protocol.runners import jobs as J
from choir_protocol.runners.jobs import JobType
from choir_twisted.store.store import DB_NAME, Store

from .paths import temp_dir

T0 = 1_700_000_000.0  # the tests' "now", where they pass one
TOKEN_KINDS = ("choir-op-", "ptrrt-", "ptrt-", "ptrjt-", "choir-")  # the tokens' prefixes


class StoreFixture:
    """A store in a temporary directory ``self.dir`` (a mixin for trial TestCases)."""

    timeout = 30

    async def setUp(self):
        self.dir = temp_dir(self)
        self.store = await Store.open(data_dir=self.dir)
        self.addCleanup(self.store.close)

    async def runner(self, name="r1"):
        tok = await self.store.create_registration_token(now=T0)
        return await self.store.register_runner(tok.token, name, "d", "1.0", "10.0.0.1", now=T0)


def stored_bytes(directory) -> bytes:
    """Everything of the store on disk: the database, its WAL and its shared memory."""
    out = b""
    for suffix in ("", "-wal", "-shm"):
        try:
            with open(os.path.join(directory, DB_NAME + suffix), "rb") as f:
                out += f.read()
        except FileNotFoundError:
            pass
    return out


def assertNotStored(test, directory, token, seen=None):
    """Neither the token nor its random part is anywhere in the store's files; ``seen``
    (text the store does keep) is, so the files are read as they are stored."""
    data = stored_bytes(directory)
    if seen is not None:
        test.assertTrue(seen.encode() in data, f"{seen!r} is not in the store's files")
    kind = next(k for k in TOKEN_KINDS if token.startswith(k))
    for needle in (token, token[len(kind):]):
        test.assertFalse(needle.encode() in data, f"{needle!r} is in the store's files")


async def jobs_in_every_state(store, runner, **child):
    """A pending job, one processing for ``runner`` (42 %), a child waiting for the pending
    one (``child``: more create_job arguments), a completed one. -> those four."""
    pending = (await store.create_job(JobType.VOD_HLS, {"n": 1})).job
    web = (await store.create_job(JobType.VOD_WEB_VIDEO, {"n": 2}, priority=5)).job
    processing = await store.accept(web.uuid, runner.id)
    await store.save(J.update(processing, time.time(), progress=42))
    waiting = (await store.create_job(JobType.VOD_HLS, {"n": 3}, parent_uuid=pending.uuid,
                                      **child)).job
    done = (await store.create_job(JobType.VOD_AUDIO_MERGE, {"n": 4})).job
    done = await store.accept(done.uuid, runner.id)
    await store.save(J.success(done, time.time()))
    return pending, processing, waiting, done


async def uploaded_concert(store):
    """An uploaded concert.mp4 (3 MiB) with one 720p.mp4 output (2 KiB); -> its media."""
    media = await store.create_media("upload", "concert.mp4", path="/srv/in/concert.mp4")
    await store.add_media_file(media.id, "input", "concert.mp4", "/srv/in/concert.mp4",
                               size=3 * 1024 * 1024)
    await store.add_media_file(media.id, "output", "720p.mp4", "/srv/out/720p.mp4", size=2048)
    return media
