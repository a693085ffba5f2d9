"""choir-runner against the daemon's RunnerService, in-process, for trial TestCases:
``RunnerFixture`` starts the service in a temporary data directory, registers runners
with the CLI's own ``run`` and waits on the store for their jobs."""
import io
import os
import uuid as uuidlib

from twisted.internet import defer, reactor, task

from choir_clients.runner import runner as R
from choir_twisted.runners.service import RunnerService

from .daemon_process import until
from .paths import private_config, temp_dir


class RunnerFixture:
    """A RunnerService in a temp data dir, a registered choir-runner's config, helpers."""

    async def start_daemon(self):
        self.tmp = temp_dir(self)
        private_config(self, os.path.join(self.tmp, "config"))
        self.service = RunnerService(reactor, "tcp:0:interface=127.0.0.1",
                                     os.path.join(self.tmp, "data"))
        await self.service.startService()
        self.addCleanup(self.service.stopService)
        self.store = self.service.store
        self.url = f"http://127.0.0.1:{self.service.port.getHost().port}"

    async def cli(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        code = await R.run(reactor, list(argv), out, err)
        return code, out.getvalue(), err.getvalue()

    async def register(self, name="runner-1"):
        token = (await self.store.create_registration_token()).token
        code, out, err = await self.cli("register", "--url", self.url, "--registration-token",
                                        token, "--runner-name", name)
        self.assertEqual(code, 0, err)
        return token

    def start_runner(self, stop_after_one=False, **kw):
        """``stop_after_one``: stop as soon as a job ends, so that a failed job, pending
        again, is not taken again before the test looks at it."""
        if stop_after_one:
            kw["on_job_done"] = lambda uuid, outcome: defer.ensureDeferred(runner.stop())
        runner = R.Runner(reactor, R.load_registrations(), progress_every=0.2,
                          work_dir=os.path.join(self.tmp, "work"),
                          on_forget=lambda r: R.forget(r["url"], r["name"]), **kw)
        os.makedirs(runner.work_dir, exist_ok=True)
        runner.start()
        self.addCleanup(runner.stop)  # before the service's cleanup (LIFO)
        return runner

    async def make_job(self, type, source, payload_builder, *args, private=None, **kw):
        media = await self.store.create_media("upload", "song", path=source)
        uuid = str(uuidlib.uuid4())
        await self.store.create_job(type, payload_builder("", uuid, media.id, *args, **kw),
                                    media_id=media.id, uuid=uuid, private_payload=private)
        self.service.hub.notify_available_jobs()  # as the daemon does when it makes a job
        return uuid, media.id

    async def finished(self, runner, uuid, deadline=90.0):
        await until(lambda: any(u == uuid for u, _ in runner.outcomes), deadline,
                    f"job {uuid} to finish")
        return dict(runner.outcomes)[uuid], await self.store.get_job(uuid)

    async def job_when(self, uuid, predicate, deadline=60.0, what="the job"):
        for _ in range(int(deadline / 0.1)):
            job = await self.store.get_job(uuid)
            if predicate(job):
                return job
            await task.deferLater(reactor, 0.1, lambda: None)
        raise AssertionError(f"timed out waiting for {what}")

    async def outputs(self, media_id):
        return {f.name: f.path for f in await self.store.media_files(media_id, "output")}
