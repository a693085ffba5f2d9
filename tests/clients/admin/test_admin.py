"""choir-admin against a real store in a temporary directory: as subprocesses (the real
entry point, react, exit statuses) and in-process (``admin.run`` with captured output)."""
import io
import json
import os
import time

from twisted.trial import unittest

from choir_clients.admin import admin
from choir_protocol.runners.jobs import JobError, JobState, JobType
from choir_twisted.store.store import DB_NAME, Store

from ...support.paths import temp_dir
from ...support.programs import choir_admin
from ...support.store import StoreFixture, jobs_in_every_state, uploaded_concert


class AdminTest(StoreFixture, unittest.TestCase):
    timeout = 120

    def cli(self, *args):
        return choir_admin("--data-dir", self.dir, *args)

    async def run_admin(self, *args):
        out, err = io.StringIO(), io.StringIO()
        code = await admin.run(["--data-dir", self.dir, *args], out, err)
        return code, out.getvalue(), err.getvalue()

    async def runner(self, name="r1", last_contact=None):
        tok = await self.store.create_registration_token()
        return await self.store.register_runner(tok.token, name, "desc", "0.1.2", "10.1.2.3",
                                                now=last_contact)

    # -- tokens ----------------------------------------------------------------------------

    async def test_token_create_list_revoke_round_trip(self):
        code, out, err = self.cli("--json", "tokens", "create", "--url", "http://choir:8000")
        self.assertEqual((code, err), (0, ""))
        created = json.loads(out)
        token = created["token"]
        self.assertTrue(token.startswith("ptrrt-"))
        options = (f"register --url http://choir:8000 --registration-token {token} "
                   f"--runner-name runner-{token[-6:]}")
        self.assertEqual(created["registerCommands"], {"choir-runner": "choir-runner " + options,
                                                       "peertube-runner": "peertube-runner "
                                                                          + options})
        self.assertEqual(created["registerCommand"], "choir-runner " + options)
        [stored] = await self.store.list_registration_tokens()
        self.assertEqual((stored.id, stored.prefix, stored.token),
                         (created["id"], token[:14], None))

        # the plain output gives the token and both command lines, with the host's name
        # when the daemon has not left its address (said to be a guess)
        code, out, _ = self.cli("tokens", "create", "--runner-name", "gpu1")
        self.assertEqual(code, 0)
        second = out.split("Registration token: ")[1].split()[0]
        for program in ("choir-runner", "peertube-runner"):
            self.assertIn(f"\n    {program} register --url http://{os.uname().nodename}:8000 "
                          f"--registration-token {second} --runner-name gpu1\n", out)
        self.assertIn(f"(http://{os.uname().nodename}:8000 is a guess", out)
        self.assertIn(f"shown only now: the daemon keeps only its hash; 'tokens list' shows "
                      f"it as {second[:14]}", out)

        # lists show a token's id and prefix, never the token again
        code, out, _ = self.cli("tokens", "list")
        self.assertEqual(code, 0)
        self.assertNotIn(token, out)
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["ID", "PREFIX", "CREATED", "REVOKED", "RUNNERS"])
        self.assertEqual(sorted(ln.split()[1] for ln in lines[1:]),
                         sorted([token[:14], second[:14]]))
        self.assertIn(created["id"][:8], [ln.split()[0] for ln in lines[1:]])

        # a token works until revoked: by the token, its prefix or its id
        await self.store.register_runner(second, "gpu1")
        code, out, err = self.cli("tokens", "revoke", token)
        self.assertEqual((code, err), (0, ""))
        self.assertIn(f"Revoked registration token {token[:14]} ({created['id']})", out)
        with self.assertRaises(JobError) as e:
            await self.store.register_runner(token, "late")
        self.assertEqual(e.exception.status, 404)

        code, out, _ = self.cli("--json", "tokens", "list")
        [live] = json.loads(out)
        self.assertEqual((live["prefix"], live["runners"], live["revoked"]),
                         (second[:14], 1, False))
        code, out, _ = await self.run_admin("--json", "tokens", "list", "--all")
        self.assertEqual({t["prefix"]: t["revoked"] for t in json.loads(out)},
                         {token[:14]: True, second[:14]: False})

        for again in (token, token[:14], created["id"]):  # already revoked
            code, out, err = self.cli("tokens", "revoke", again)
            self.assertEqual((code, out), (1, ""))
            self.assertEqual(err.strip().count("\n"), 0)
            self.assertIn("unknown or already revoked registration token", err)

        code, out, _ = await self.run_admin("--json", "tokens", "revoke", live["id"][:8])
        self.assertEqual(json.loads(out), {"revoked": live["id"], "prefix": second[:14]})
        self.assertEqual(await self.store.list_registration_tokens(), [])

    async def test_a_token_prefix_two_tokens_share_is_refused(self):
        one = await self.store.create_registration_token()
        two = await self.store.create_registration_token()
        clash = one.prefix
        await self.store.pool.runOperation("UPDATE registration_tokens SET token_prefix = ?",
                                           (clash,))
        code, out, err = await self.run_admin("tokens", "revoke", clash)
        self.assertEqual((code, out), (1, ""))
        self.assertIn("is ambiguous (2 match)", err)
        code, _, _ = await self.run_admin("tokens", "revoke", two.id)
        self.assertEqual(code, 0)
        self.assertEqual([t.id for t in await self.store.list_registration_tokens()], [one.id])

    # -- runners ---------------------------------------------------------------------------

    async def test_runners_list_and_remove(self):
        r = await self.runner("gpu-box", last_contact=time.time() - 150)
        other = await self.runner("spare")
        tr = await self.store.create_job(JobType.VOD_HLS, {"i": 1})
        await self.store.accept(tr.job.uuid, r.id)

        code, out, err = await self.run_admin("runners", "list")
        self.assertEqual((code, err), (0, ""))
        lines = out.splitlines()
        self.assertEqual(lines[0].split(),
                         ["ID", "NAME", "VERSION", "IP", "LAST", "CONTACT", "PROCESSING"])
        row = next(ln for ln in lines if "gpu-box" in ln)
        self.assertEqual(row.split(), [r.id[:8], "gpu-box", "0.1.2", "10.1.2.3", "2", "min",
                                       "ago", "1"])
        self.assertEqual(next(ln for ln in lines if "spare" in ln).split()[-3:],
                         ["just", "now", "0"])

        code, out, _ = self.cli("--json", "runners", "list")
        listed = {x["name"]: x for x in json.loads(out)}
        self.assertEqual((listed["gpu-box"]["jobsProcessing"], listed["spare"]["jobsProcessing"]),
                         (1, 0))

        code, out, err = self.cli("runners", "remove", "gpu-box")
        self.assertEqual((code, err), (0, ""))
        self.assertIn("1 job(s) it was processing went back to pending", out)
        self.assertEqual([x.id for x in await self.store.list_runners()], [other.id])
        job = await self.store.get_job(tr.job.uuid)
        self.assertEqual((job.state, job.runner_id, job.job_token_hash),
                         (JobState.PENDING, None, None))

        code, _, err = await self.run_admin("runners", "remove", other.id[:8])  # id prefix
        self.assertEqual(code, 0)
        self.assertEqual(await self.store.list_runners(), [])
        code, _, err = self.cli("runners", "remove", "gpu-box")
        self.assertEqual(code, 1)
        self.assertIn("unknown runner 'gpu-box'", err)

    # -- jobs ------------------------------------------------------------------------------

    async def make_jobs(self):
        r = await self.runner()
        return (r, *await jobs_in_every_state(self.store, r))

    async def test_jobs_list_filters_by_state_and_type(self):
        r, pending, processing, child, done = await self.make_jobs()

        def uuids(out):
            return {ln.split()[0] for ln in out.splitlines()[1:]}

        code, out, _ = await self.run_admin("jobs", "list")
        self.assertEqual(code, 0)
        self.assertEqual(uuids(out), {j.uuid[:8] for j in (pending, processing, child, done)})
        self.assertEqual(out.splitlines()[0].split(), ["UUID", "TYPE", "STATE", "PROGRESS",
                                                       "FAILURES", "PRIORITY", "RUNNER", "AGE"])
        row = next(ln for ln in out.splitlines() if ln.startswith(processing.uuid[:8]))
        self.assertEqual(row.split(), [processing.uuid[:8], JobType.VOD_WEB_VIDEO,
                                       "Processing", "42%", "0", "5", "r1", "just", "now"])
        self.assertIn("Waiting for parent job to finish",
                      next(ln for ln in out.splitlines() if ln.startswith(child.uuid[:8])))

        code, out, _ = await self.run_admin("jobs", "list", "--state", "pending")
        self.assertEqual(uuids(out), {pending.uuid[:8]})
        code, out, _ = await self.run_admin("jobs", "list", "--state", "pending,processing")
        self.assertEqual(uuids(out), {pending.uuid[:8], processing.uuid[:8]})
        code, out, _ = await self.run_admin("jobs", "list", "--type", JobType.VOD_HLS)
        self.assertEqual(uuids(out), {pending.uuid[:8], child.uuid[:8]})
        code, out, _ = self.cli("jobs", "list", "--type", JobType.VOD_HLS, "--state", "waiting")
        self.assertEqual((code, uuids(out)), (0, {child.uuid[:8]}))
        code, out, _ = await self.run_admin("jobs", "list", "--state", "cancelled")
        self.assertEqual((code, out), (0, "No jobs match.\n"))

        code, out, _ = self.cli("--json", "jobs", "list", "--state", "completed,processing")
        listed = {j["uuid"]: j for j in json.loads(out)}
        self.assertEqual({u: j["state"]["label"] for u, j in listed.items()},
                         {done.uuid: "Completed", processing.uuid: "Processing"})
        self.assertEqual((listed[processing.uuid]["runnerName"],
                          listed[processing.uuid]["progress"]), ("r1", 42))

    async def test_jobs_show(self):
        r, pending, processing, child, done = await self.make_jobs()
        code, out, _ = await self.run_admin("jobs", "show", pending.uuid[:8])
        self.assertEqual(code, 0)
        self.assertIn(f"UUID:         {pending.uuid}", out)
        self.assertIn('"n": 1', out)
        self.assertIn(f"{child.uuid}  {JobType.VOD_HLS}  Waiting for parent job to finish", out)
        code, out, _ = self.cli("--json", "jobs", "show", processing.uuid)
        shown = json.loads(out)
        self.assertEqual((shown["payload"], shown["state"]["id"], shown["runnerId"]),
                         ({"n": 2}, int(JobState.PROCESSING), r.id))
        code, out, err = await self.run_admin("jobs", "show", "0000ffff-nope")
        self.assertEqual((code, out), (1, ""))
        self.assertIn("unknown job", err)

    async def test_jobs_cancel(self):
        r, pending, processing, child, done = await self.make_jobs()
        seq = await self.store.last_event()
        code, out, err = self.cli("jobs", "cancel", pending.uuid)
        self.assertEqual((code, err), (0, ""))
        self.assertIn("1 waiting child job(s) parent-cancelled", out)
        self.assertEqual((await self.store.get_job(pending.uuid)).state, JobState.CANCELLED)
        self.assertEqual((await self.store.get_job(child.uuid)).state, JobState.PARENT_CANCELLED)
        # the daemon's change feed sees both
        _, changes = await self.store.changed_since(seq)
        self.assertEqual(set(changes), {(pending.uuid, JobState.CANCELLED),
                                        (child.uuid, JobState.PARENT_CANCELLED)})

        code, out, err = self.cli("jobs", "cancel", done.uuid)
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err, f"choir-admin: job {done.uuid} is completed: cannot cancel it\n")
        self.assertEqual((await self.store.get_job(done.uuid)).state, JobState.COMPLETED)

        code, out, _ = await self.run_admin("--json", "jobs", "cancel", processing.uuid[:10])
        self.assertEqual(json.loads(out), {"cancelled": processing.uuid,
                                           "previousState": "Processing",
                                           "parentCancelled": []})
        job = await self.store.get_job(processing.uuid)
        self.assertEqual((job.state, job.job_token_hash), (JobState.CANCELLED, None))
        code, _, err = await self.run_admin("jobs", "cancel", processing.uuid)  # twice
        self.assertEqual(code, 1)
        self.assertIn("cancelled: cannot cancel it", err)

    # -- media -----------------------------------------------------------------------------

    async def test_media_list_and_show(self):
        m = await uploaded_concert(self.store)
        job = (await self.store.create_job(JobType.VOD_HLS, {}, media_id=m.id)).job
        code, out, _ = await self.run_admin("media", "list")
        self.assertEqual(code, 0)
        self.assertEqual(out.splitlines()[1].split()[:7],
                         [m.id[:8], "upload", "concert.mp4", "1", "1", "3.0", "MiB"])
        code, out, _ = self.cli("media", "show", m.id[:8])
        self.assertEqual(code, 0)
        self.assertIn("concert.mp4  3.0 MiB  /srv/in/concert.mp4", out)
        self.assertIn("720p.mp4  2.0 KiB  /srv/out/720p.mp4", out)
        self.assertIn(job.uuid, out)
        # the input file is listed under Inputs, the output under Outputs
        self.assertLess(out.index("Inputs:"), out.rindex("/srv/in/"))
        self.assertLess(out.rindex("/srv/in/"), out.index("Outputs:"))
        self.assertLess(out.index("Outputs:"), out.index("/srv/out/"))
        code, out, _ = await self.run_admin("--json", "media", "show", m.id)
        files = json.loads(out)["files"]
        self.assertEqual(sorted((f["role"], f["size"], f["path"]) for f in files),
                         [("input", 3 * 1024 * 1024, "/srv/in/concert.mp4"),
                          ("output", 2048, "/srv/out/720p.mp4")])
        code, _, err = self.cli("media", "show", "nope")
        self.assertEqual(code, 1)
        self.assertIn("unknown media 'nope'", err)


class UsageAndMissingStoreTest(unittest.TestCase):
    timeout = 120

    def test_usage_errors_exit_2(self):
        for args in ([], ["jobs"], ["frobnicate"], ["tokens", "revoke"],
                     ["jobs", "show", "a", "b"], ["jobs", "list", "--state", "bogus"],
                     ["jobs", "list", "--type", "mp3"], ["--no-such-option", "jobs", "list"]):
            code, out, err = choir_admin("--data-dir", "/nonexistent/choir", *args)
            self.assertEqual(code, 2, args)
            self.assertIn("choir-admin: error:", err, args)
            self.assertFalse(os.path.exists("/nonexistent/choir"))

    async def test_usage_errors_in_process(self):
        err = io.StringIO()
        self.assertEqual(await admin.run(["tokens", "revoke"], io.StringIO(), err), 2)
        self.assertIn("missing TOKEN", err.getvalue())
        self.assertIn("see 'choir-admin tokens revoke --help'", err.getvalue())

    def test_help_exits_0(self):
        code, out, _ = choir_admin("--help")
        self.assertEqual(code, 0)
        self.assertIn("Usage: choir-admin", out)
        for command in ("tokens", "runners", "jobs", "media"):
            self.assertIn(command, out)
        code, out, _ = choir_admin("jobs", "list", "--help")
        self.assertEqual(code, 0)
        self.assertIn("--state", out)

    async def test_missing_data_dir_creates_nothing(self):
        parent = temp_dir(self)
        missing = os.path.join(parent, "choir-data")
        code, out, err = choir_admin("--data-dir", missing, "jobs", "list")
        self.assertEqual((code, out), (1, ""))
        self.assertIn(f"no data directory '{missing}'", err)
        self.assertEqual(os.listdir(parent), [])
        err = io.StringIO()
        self.assertEqual(await admin.run(["-d", missing, "tokens", "create"], io.StringIO(),
                                         err), 1)
        self.assertEqual(os.listdir(parent), [])

        # an existing directory without a store: read-only commands do not create one
        os.mkdir(missing)
        for args in (["jobs", "list"], ["tokens", "list"], ["runners", "list"],
                     ["media", "list"], ["tokens", "revoke", "x"]):
            code, _, err = choir_admin("--data-dir", missing, *args)
            self.assertEqual(code, 1, args)
            self.assertIn(f"no store '{os.path.join(missing, DB_NAME)}'", err)
            self.assertEqual(os.listdir(missing), [], args)
        # tokens create may start the store (before the daemon's first run)
        code, out, _ = choir_admin("--data-dir", missing, "--json", "tokens", "create")
        self.assertEqual(code, 0)
        self.assertIn(DB_NAME, os.listdir(missing))
        store = await Store.open(data_dir=missing)
        self.addCleanup(store.close)
        self.assertEqual([t.prefix for t in await store.list_registration_tokens()],
                         [json.loads(out)["token"][:14]])
