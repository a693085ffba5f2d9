"""PeerTube's admin API for runners over real HTTP on 127.0.0.1, beside the runner API on
the same site, with a real SQLite store and a Clock."""
import io
import json

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.web import client
from twisted.web.http_headers import Headers

from choir_protocol.runners import jobs as J
from choir_protocol.runners.jobs import JobState, JobType
from choir_twisted.runners.admin_api import AdminAPI, is_admin_route
from choir_twisted.runners.api import RunnerAPI
from choir_twisted.runners.notifications import NotificationHub
from choir_twisted.store.operator import hash_token
from choir_twisted.store.store import Store

from ...support.http import Answer
from ...support.paths import temp_dir
from ...support.runner_api import P, check_problem
from ...support.store import T0


class IsAdminRouteTest(unittest.SynchronousTestCase):
    def test_the_admin_gets_gets_deletes_and_two_posts(self):
        def route(method, path):
            return is_admin_route(method, path.encode().lstrip(b"/").split(b"/"))
        for method, path in (("GET", P), ("GET", P + "/"), ("GET", P + "/jobs"),
                             ("HEAD", P + "/registration-tokens"), ("DELETE", P + "/abc"),
                             ("DELETE", P + "/jobs/u1"), ("DELETE", P + "/registration-tokens/1"),
                             ("POST", P + "/registration-tokens/generate"),
                             ("POST", P + "/registration-tokens/1/revoke"),
                             ("POST", P + "/jobs/u1/cancel")):
            self.assertTrue(route(method.encode(), path), (method, path))
        for method, path in (("POST", P + "/register"), ("POST", P + "/unregister"),
                             ("POST", P + "/jobs/request"), ("POST", P + "/jobs/u1/accept"),
                             ("POST", P + "/jobs/u1/success"), ("POST", P + "/jobs//cancel"),
                             ("POST", P + "/jobs/u1/files/videos/m/max-quality"),
                             ("PUT", P + "/jobs"), ("GET", "/api/v1/media"), ("GET", "/"),
                             ("GET", "/api/v1/runnersx")):
            self.assertFalse(route(method.encode(), path), (method, path))


class AdminAPITest(unittest.TestCase):
    timeout = 30

    async def setUp(self):
        self.tmp = temp_dir(self)
        self.store = await Store.open(data_dir=self.tmp)
        self.addCleanup(self.store.close)
        self.clock = Clock()
        self.clock.advance(T0)
        self.hub = NotificationHub(self.clock, lambda token: None)
        self.addCleanup(self.hub.stop)
        self.notified = 0
        real = self.hub.notify_available_jobs

        def notify():
            self.notified += 1
            real()
        self.hub.notify_available_jobs = notify
        self.api = RunnerAPI(self.store, self.hub, self.tmp, self.clock)
        self.admin = AdminAPI(self.store, self.hub, self.clock, self.api.base_url)
        self.port = reactor.listenTCP(0, self.api.site(admin=self.admin.resource()),
                                      interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.base = f"http://127.0.0.1:{self.port.getHost().port}"
        pool = client.HTTPConnectionPool(reactor, persistent=False)
        self.agent = client.Agent(reactor, pool=pool)
        op, self.token = await self.store.create_operator_token("tests", now=T0)
        self.op_id = op.id

    async def call(self, method, path, body=None, token=True, headers=None):
        hs = Headers(headers or {})
        if token is True:
            token = self.token
        if token:
            hs.setRawHeaders(b"authorization", [f"Bearer {token}".encode()])
        producer = None
        if body is not None:
            hs.setRawHeaders(b"content-type", [b"application/json"])
            producer = client.FileBodyProducer(io.BytesIO(json.dumps(body).encode()))
        response = await self.agent.request(method.encode(), (self.base + path).encode(), hs,
                                            producer)
        return Answer(response, await client.readBody(response))

    assertProblem = check_problem

    # -- fixtures --

    async def runner(self, name, at=T0, token=None):
        if token is None:
            token = (await self.store.create_registration_token(now=at)).token
        return await self.store.register_runner(token, name, "desc " + name, "1.2.3",
                                                "10.0.0.1", now=at)

    async def job(self, type=JobType.VOD_WEB_VIDEO, at=T0, parent=None, priority=100):
        uuid = "job-" + str(int(at - T0)).rjust(4, "0") + "-" + type[:3]
        payload = J.web_video_payload("", uuid, uuid, 720, 30)
        tr = await self.store.create_job(type, payload, priority=priority, uuid=uuid,
                                         private_payload={"secret": 1}, parent_uuid=parent,
                                         now=at)
        return tr.job

    # -- auth --

    async def test_without_a_valid_operator_token_every_route_is_refused(self):
        routes = [("GET", P), ("DELETE", P + "/r1"), ("GET", P + "/registration-tokens"),
                  ("POST", P + "/registration-tokens/generate"),
                  ("DELETE", P + "/registration-tokens/t1"),
                  ("POST", P + "/registration-tokens/t1/revoke"), ("GET", P + "/jobs"),
                  ("POST", P + "/jobs/u1/cancel"), ("DELETE", P + "/jobs/u1"),
                  ("GET", P + "/nothing/here")]
        other, revoked = await self.store.create_operator_token("old", now=T0)
        self.assertTrue(await self.store.revoke_operator_token(other.id))
        for method, path in routes:
            a = await self.call(method, path, token=None)
            self.assertProblem(a, 401, "unauthorized")
            self.assertEqual(a.headers.getRawHeaders(b"www-authenticate"),
                             [b'Bearer realm="choir"'])
            a = await self.call(method, path, token=None,
                                headers={b"authorization": [b"Basic dXNlcjpwdw=="]})
            self.assertProblem(a, 401, "unauthorized")
            self.assertProblem(await self.call(method, path, token="choir-op-wrong"), 403,
                               "invalid_operator_token")
            self.assertProblem(await self.call(method, path, token=revoked), 403,
                               "invalid_operator_token")
        self.assertEqual(await self.store.list_registration_tokens(), [])

        # the token is stored hashed, and its use is recorded
        rows = await self.store.pool.runQuery("SELECT token_hash, last_used_at FROM "
                                              "operator_tokens WHERE id = ?", (self.op_id,))
        self.assertEqual(rows, [(hash_token(self.token), None)])
        self.clock.advance(5)
        self.assertEqual((await self.call("GET", P)).code, 200)
        [live] = await self.store.list_operator_tokens()
        self.assertEqual((live.id, live.last_used_at), (self.op_id, T0 + 5))

    async def test_the_runners_routes_still_reach_the_runner_api(self):
        reg = await self.store.create_registration_token(now=T0)
        a = await self.call("POST", P + "/register", {"registrationToken": reg.token,
                                                      "name": "r1"}, token=None)
        self.assertEqual(a.code, 200, a.body)
        self.assertTrue(a.json["runnerToken"].startswith("ptrt-"))
        a = await self.call("GET", P + "/register")  # an admin GET: no such admin route
        self.assertProblem(a, 404, "not_found")

    # -- runners --

    async def test_runners_list_pages_and_sorts(self):
        for i in range(3):
            await self.runner(f"r{i}", at=T0 + i)
        a = await self.call("GET", P)
        self.assertEqual(a.code, 200, a.body)
        self.assertEqual(a.json["total"], 3)
        self.assertEqual([r["name"] for r in a.json["data"]], ["r2", "r1", "r0"])  # -createdAt
        first = a.json["data"][2]
        self.assertEqual(set(first), {"id", "name", "description", "ip", "lastContact",
                                      "createdAt", "updatedAt", "version"})
        self.assertEqual((first["description"], first["ip"], first["createdAt"]),
                         ("desc r0", "10.0.0.1", J.iso(T0)))
        a = await self.call("GET", P + "?sort=createdAt&start=1&count=1")
        self.assertEqual((a.json["total"], [r["name"] for r in a.json["data"]]), (3, ["r1"]))
        a = await self.call("GET", P + "?sort=createdAt&start=5")
        self.assertEqual((a.json["total"], a.json["data"]), (3, []))
        for path in (P + "/", P + "/jobs/", P + "/registration-tokens/"):  # as express routes
            self.assertEqual((await self.call("GET", path)).code, 200, path)
        for bad in ("count=101", "count=-1", "count=x", "start=-2", "sort=name",
                    "sort=createdAt&sort=-createdAt", "start=%ff"):
            self.assertProblem(await self.call("GET", P + "?" + bad), 400, "bad_request")

    async def test_removing_a_runner_puts_its_job_back_to_pending(self):
        r = await self.runner("gpu")
        job = await self.job()
        await self.store.accept(job.uuid, r.id, now=T0)
        a = await self.call("DELETE", f"{P}/{r.id}")
        self.assertEqual((a.code, a.body), (204, b""))
        self.assertEqual(await self.store.list_runners(), [])
        job = await self.store.get_job(job.uuid)
        self.assertEqual((job.state, job.runner_id, job.job_token_hash),
                         (JobState.PENDING, None, None))
        self.assertEqual(self.notified, 1)
        self.assertProblem(await self.call("DELETE", f"{P}/{r.id}"), 404, "unknown_runner")

    # -- registration tokens --

    async def test_registration_tokens_generate_list_revoke(self):
        a = await self.call("POST", P + "/registration-tokens/generate")
        self.assertEqual((a.code, a.body), (204, b""))
        token_id = a.headers.getRawHeaders(b"x-registration-token-id")[0].decode()
        # the token itself is in this answer only: the store keeps its hash
        [token] = [t.decode() for t in a.headers.getRawHeaders(b"x-registration-token")]
        self.assertTrue(token.startswith("ptrrt-"))
        self.assertEqual(a.headers.getRawHeaders(b"cache-control"), [b"no-store"])
        [tok] = await self.store.list_registration_tokens()
        self.assertEqual((tok.id, tok.token, tok.prefix), (token_id, None, token[:14]))
        await self.runner("a", token=token)
        self.clock.advance(10)
        await self.call("POST", P + "/registration-tokens/generate")
        a = await self.call("GET", P + "/registration-tokens?sort=createdAt")
        self.assertEqual(a.code, 200, a.body)
        self.assertEqual(a.json["total"], 2)
        self.assertEqual(a.json["data"][0], {
            "id": token_id, "registrationToken": None, "registrationTokenPrefix": token[:14],
            "createdAt": J.iso(T0), "updatedAt": J.iso(T0), "registeredRunnersCount": 1,
            "revoked": False})
        self.assertNotIn(token[14:].encode(), a.body)
        a = await self.call("GET", P + "/registration-tokens?count=1")
        self.assertEqual((a.json["total"], a.json["data"][0]["createdAt"]),
                         (2, J.iso(T0 + 10)))

        self.assertEqual((await self.call(
            "POST", f"{P}/registration-tokens/{token_id}/revoke")).code, 204)
        with self.assertRaises(J.JobError):
            await self.store.register_runner(token, "late")
        self.assertProblem(await self.call("POST", f"{P}/registration-tokens/{token_id}/revoke"),
                           409)
        self.assertProblem(await self.call("POST", f"{P}/registration-tokens/nope/revoke"),
                           404, "unknown_registration_token")
        a = await self.call("GET", P + "/registration-tokens")
        self.assertEqual(a.json["total"], 1)
        a = await self.call("GET", P + "/registration-tokens?includeRevoked=true")
        self.assertEqual(a.json["total"], 2)
        self.assertEqual(len(await self.store.list_runners()), 1)  # revoking keeps them

    async def test_deleting_a_registration_token_removes_its_runners(self):
        tok = await self.store.create_registration_token(now=T0)
        a = await self.runner("a", token=tok.token)
        await self.runner("b", token=tok.token)
        other = await self.runner("c")
        job = await self.job()
        await self.store.accept(job.uuid, a.id, now=T0)
        a2 = await self.call("DELETE", f"{P}/registration-tokens/{tok.id}")
        self.assertEqual(a2.code, 204, a2.body)
        self.assertEqual([r.name for r in await self.store.list_runners()], [other.name])
        self.assertEqual((await self.store.get_job(job.uuid)).state, JobState.PENDING)
        self.assertEqual(self.notified, 1)
        self.assertNotIn(tok.id, [t.id for t in await self.store.list_registration_tokens(
            include_revoked=True)])
        self.assertProblem(await self.call("DELETE", f"{P}/registration-tokens/{tok.id}"), 404,
                           "unknown_registration_token")

    # -- jobs --

    async def make_jobs(self):
        r = await self.runner("GPU-Box")
        web = await self.job(JobType.VOD_WEB_VIDEO, at=T0 + 1, priority=5)
        hls = await self.job(JobType.VOD_HLS, at=T0 + 2)
        child = await self.job(JobType.TRANSCRIPTION, at=T0 + 3, parent=hls.uuid)
        processing = await self.store.accept(web.uuid, r.id, now=T0 + 4)
        return r, processing, hls, child

    async def test_jobs_list_search_states_types_and_shape(self):
        r, web, hls, child = await self.make_jobs()

        def uuids(a):
            self.assertEqual(a.code, 200, a.body)
            return [j["uuid"] for j in a.json["data"]]

        a = await self.call("GET", P + "/jobs")
        self.assertEqual(a.json["total"], 3)
        self.assertEqual(uuids(a), [child.uuid, hls.uuid, web.uuid])
        self.assertEqual(uuids(await self.call("GET", P + "/jobs?sort=priority")),
                         [web.uuid, hls.uuid, child.uuid])
        self.assertEqual(uuids(await self.call("GET", P + "/jobs?sort=createdAt&count=2")),
                         [web.uuid, hls.uuid])
        self.assertEqual(uuids(await self.call("GET", P + "/jobs?search=HLS")), [hls.uuid])
        self.assertEqual(uuids(await self.call("GET", P + "/jobs?search=gpu-b")), [web.uuid])
        self.assertEqual(uuids(await self.call("GET", P + "/jobs?search=JOB-0003")), [child.uuid])
        self.assertEqual(uuids(await self.call("GET", P + "/jobs?search=%25")), [])  # literal %
        self.assertEqual(uuids(await self.call("GET", P + "/jobs?stateOneOf=1&stateOneOf=2"
                                                          "&sort=createdAt")),
                         [web.uuid, hls.uuid])
        self.assertEqual(uuids(await self.call("GET", P + "/jobs?stateOneOf[]=5")), [child.uuid])
        self.assertEqual(uuids(await self.call(
            "GET", P + f"/jobs?typeOneOf={JobType.VOD_HLS}&stateOneOf=1")), [hls.uuid])
        for bad in ("stateOneOf=10", "stateOneOf=x", "typeOneOf=mp3", "sort=uuid"):
            self.assertProblem(await self.call("GET", P + "/jobs?" + bad), 400, "bad_request")

        a = await self.call("GET", P + "/jobs?sort=createdAt")
        shown = {j["uuid"]: j for j in a.json["data"]}
        w = shown[web.uuid]
        self.assertEqual(w["state"], {"id": 2, "label": "Processing"})
        self.assertEqual(w["runner"], {"id": r.id, "name": "GPU-Box",
                                       "description": "desc GPU-Box"})
        self.assertIsNone(w["parent"])
        self.assertEqual(w["privatePayload"], {"secret": 1})
        self.assertEqual(w["payload"]["input"]["videoFileUrl"],
                         self.base + web.payload["input"]["videoFileUrl"])
        self.assertEqual(w["startedAt"], J.iso(T0 + 4))
        self.assertNotIn("jobToken", w)
        self.assertEqual(shown[child.uuid]["parent"],
                         {"uuid": hls.uuid, "type": JobType.VOD_HLS,
                          "state": {"id": 1, "label": "Pending"}})
        self.assertIsNone(shown[child.uuid]["runner"])
        self.assertEqual(set(w), {"uuid", "type", "state", "payload", "privatePayload",
                                  "progress", "priority", "failures", "error", "parent",
                                  "runner", "createdAt", "updatedAt", "startedAt",
                                  "finishedAt", "mediaId"})

    async def test_cancel_a_job_and_its_waiting_children(self):
        r, web, hls, child = await self.make_jobs()
        seq = await self.store.last_event()
        self.clock.advance(7)
        a = await self.call("POST", f"{P}/jobs/{hls.uuid}/cancel")
        self.assertEqual((a.code, a.body), (204, b""))
        self.assertEqual((await self.store.get_job(hls.uuid)).state, JobState.CANCELLED)
        self.assertEqual((await self.store.get_job(child.uuid)).state, JobState.PARENT_CANCELLED)
        _, changes = await self.store.changed_since(seq)  # the daemon's feed hears of both
        self.assertEqual(set(changes), {(hls.uuid, JobState.CANCELLED),
                                        (child.uuid, JobState.PARENT_CANCELLED)})
        problem = self.assertProblem(await self.call("POST", f"{P}/jobs/{hls.uuid}/cancel"),
                                     400, "runner_job_not_cancellable")
        self.assertIn("cannot cancel", problem["detail"])
        self.assertProblem(await self.call("POST", f"{P}/jobs/nope/cancel"), 404,
                           "unknown_runner_job")
        # a processing job: its runner's next update is refused
        self.assertEqual((await self.call("POST", f"{P}/jobs/{web.uuid}/cancel")).code, 204)
        job = await self.store.get_job(web.uuid)
        self.assertEqual((job.state, job.job_token_hash, job.finished_at),
                         (JobState.CANCELLED, None, T0 + 7))

    async def test_delete_a_job_cancels_it_first_and_takes_its_children(self):
        r, web, hls, child = await self.make_jobs()
        seq = await self.store.last_event()
        a = await self.call("DELETE", f"{P}/jobs/{hls.uuid}")
        self.assertEqual((a.code, a.body), (204, b""))
        self.assertIsNone(await self.store.get_job(hls.uuid))
        self.assertIsNone(await self.store.get_job(child.uuid))
        _, changes = await self.store.changed_since(seq)
        self.assertIn((hls.uuid, JobState.CANCELLED), changes)
        done = await self.job(JobType.VOD_HLS, at=T0 + 9)
        done = await self.store.accept(done.uuid, r.id, now=T0 + 9)
        await self.store.save(J.success(done, T0 + 10), now=T0 + 10)
        self.assertEqual((await self.call("DELETE", f"{P}/jobs/{done.uuid}")).code, 204)
        self.assertEqual([j.uuid for j in await self.store.list_jobs()], [web.uuid])
        self.assertProblem(await self.call("DELETE", f"{P}/jobs/{done.uuid}"), 404,
                           "unknown_runner_job")
