"""choir-admin's commands on the daemon's store (``choir.sqlite3`` in its data directory)."""
import json
import os

import attrs

from choir_protocol.runners import jobs as J
from choir_protocol.runners.jobs import JobError, JobState
from choir_protocol.runners.publishing import media_state

from . import hints
from .output import AdminError, Output, ago, human_size, live_token, resolve, table


class Admin(Output):
    """The commands on the daemon's store: ``{group}_{leaf}(opts)``."""

    def __init__(self, store, out, as_json, now, data_dir="."):
        super().__init__(out, as_json, now)
        self.store = store
        self.data_dir = os.path.abspath(data_dir)

    # tokens
    async def tokens_create(self, opts):
        where = hints.daemon_url(opts["url"], data_dir=self.data_dir)
        tok = await self.store.create_registration_token()
        self.emit_new_token(tok.token, tok.id, J.iso(tok.created_at), where,
                            opts["runner-name"])

    async def tokens_list(self, opts):
        tokens = await self.store.list_registration_tokens(include_revoked=opts["all"])
        used = {}
        for r in await self.store.list_runners():
            used[r.registration_token_hash] = used.get(r.registration_token_hash, 0) + 1
        self.emit_tokens([(t.id, t.prefix, t.created_at, t.revoked, used.get(t.token_hash, 0))
                          for t in tokens])

    async def tokens_revoke(self, opts):
        tok = live_token(await self.store.list_registration_tokens(), opts["token"],
                          "registration token")
        if not await self.store.revoke_registration_token_id(tok.id):
            raise AdminError(f"registration token {tok.prefix} was revoked meanwhile")
        self.emit_revoked_token(tok.id, tok.prefix)

    # runners
    async def _processing_by_runner(self):
        counts = {}
        for job in await self.store.list_jobs(states=[JobState.PROCESSING]):
            counts[job.runner_id] = counts.get(job.runner_id, 0) + 1
        return counts

    async def runners_list(self, opts):
        runners = await self.store.list_runners()
        counts = await self._processing_by_runner()
        self.emit([{"id": r.id, "name": r.name, "description": r.description,
                    "version": r.version, "ip": r.ip, "lastContact": J.iso(r.last_contact),
                    "createdAt": J.iso(r.created_at), "jobsProcessing": counts.get(r.id, 0)}
                   for r in runners],
                  table(["ID", "NAME", "VERSION", "IP", "LAST CONTACT", "PROCESSING"],
                        [[r.id[:8], r.name, r.version, r.ip, ago(r.last_contact, self.now),
                          counts.get(r.id, 0)] for r in runners])
                  if runners else "No registered runners.")

    async def runners_remove(self, opts):
        runner = resolve(await self.store.list_runners(), opts["id_or_name"], "runner",
                          keys=("id", "name"))
        processing = (await self._processing_by_runner()).get(runner.id, 0)
        if not await self.store.unregister_runner(runner.id):
            raise AdminError(f"runner {runner.name!r} was removed meanwhile")
        self.emit({"removed": runner.id, "name": runner.name, "jobsRequeued": processing},
                  f"Removed runner {runner.name} ({runner.id}); {processing} job(s) it was "
                  f"processing went back to pending.")

    # jobs
    async def _job(self, value):
        job = await self.store.get_job(value)
        if job is None:
            job = resolve(await self.store.list_jobs() if len(value) >= 4 else [], value,
                           "job", keys=("uuid",))
        return job

    async def _runner_names(self):
        return {r.id: r.name for r in await self.store.list_runners()}

    def _job_dict(self, job, names):
        d = job.to_wire()
        d.update({"parentUuid": job.parent_uuid, "runnerId": job.runner_id,
                  "runnerName": names.get(job.runner_id), "mediaId": job.media_id})
        return d

    async def jobs_list(self, opts):
        jobs = await self.store.list_jobs(states=opts["state"], types=opts["type"],
                                          limit=opts["limit"])
        names = await self._runner_names()
        self.emit([self._job_dict(j, names) for j in jobs],
                  table(["UUID", "TYPE", "STATE", "PROGRESS", "FAILURES", "PRIORITY", "RUNNER",
                         "AGE"],
                        [[j.uuid[:8], j.type, j.state.label,
                          None if j.progress is None else f"{j.progress}%", j.failures,
                          j.priority, names.get(j.runner_id, j.runner_id and j.runner_id[:8]),
                          ago(j.created_at, self.now)] for j in jobs])
                  if jobs else "No jobs match.")

    async def jobs_show(self, opts):
        job = await self._job(opts["uuid"])
        names = await self._runner_names()
        children = await self.store.children(job.uuid)
        d = self._job_dict(job, names)
        d["privatePayload"] = job.private_payload
        d["children"] = [{"uuid": c.uuid, "type": c.type, "state": c.state.label}
                         for c in children]
        runner = names.get(job.runner_id, job.runner_id)
        lines = [f"{k + ':':<14}{v}" for k, v in (
            ("UUID", job.uuid), ("Type", job.type),
            ("State", f"{job.state.label} ({int(job.state)})"),
            ("Progress", "-" if job.progress is None else f"{job.progress}%"),
            ("Failures", job.failures), ("Error", job.error or "-"),
            ("Priority", job.priority), ("Runner", runner or "-"),
            ("Parent", job.parent_uuid or "-"), ("Media", job.media_id or "-"),
            ("Created", f"{J.iso(job.created_at)} ({ago(job.created_at, self.now)})"),
            ("Updated", f"{J.iso(job.updated_at)} ({ago(job.updated_at, self.now)})"),
            ("Started", J.iso(job.started_at) or "-"),
            ("Finished", J.iso(job.finished_at) or "-"))]
        lines.append("Payload:")
        lines += ["  " + ln for ln in json.dumps(job.payload, indent=2).splitlines()]
        if job.private_payload:
            lines.append("Private payload:")
            lines += ["  " + ln for ln in json.dumps(job.private_payload, indent=2).splitlines()]
        if children:
            lines.append("Children:")
            lines += ["  " + ln for ln in table(["UUID", "TYPE", "STATE"], [
                [c.uuid, c.type, c.state.label] for c in children]).splitlines()]
        self.emit(d, "\n".join(lines))

    async def jobs_cancel(self, opts):
        from choir_twisted.store.store import StaleJob
        job = await self._job(opts["uuid"])
        children = await self.store.children(job.uuid)
        try:
            tr = J.cancel(job, self.store.clock(), children)
            await self.store.save(tr)
        except JobError as e:
            raise AdminError(e.detail)
        except StaleJob:
            raise AdminError(f"job {job.uuid} changed while cancelling it; look again "
                             f"with 'jobs show {job.uuid}'")
        self.emit({"cancelled": job.uuid, "previousState": tr.previous_state.label,
                   "parentCancelled": [c.uuid for c in tr.children]},
                  f"Cancelled job {job.uuid} (was {tr.previous_state.label.lower()})"
                  + (f"; {len(tr.children)} waiting child job(s) parent-cancelled."
                     if tr.children else "."))

    # media
    async def media_list(self, opts):
        rows, data = [], []
        for m in await self.store.list_media():
            files = await self.store.media_files(m.id)
            ins = [f for f in files if f.role == "input"]
            outs = [f for f in files if f.role == "output"]
            size = sum(f.size or 0 for f in files)
            rows.append([m.id[:8], m.kind, m.name, len(ins), len(outs), human_size(size),
                         ago(m.created_at, self.now)])
            data.append({"id": m.id, "kind": m.kind, "name": m.name, "path": m.path,
                         "createdAt": J.iso(m.created_at), "inputs": len(ins),
                         "outputs": len(outs), "size": size})
        self.emit(data, table(["ID", "KIND", "NAME", "INPUTS", "OUTPUTS", "SIZE", "AGE"], rows)
                  if rows else "No media.")

    async def media_show(self, opts):
        m = await self.store.get_media(opts["id"])
        if m is None:
            m = resolve(await self.store.list_media(), opts["id"], "media")
        files = await self.store.media_files(m.id)
        jobs = await self.store.media_jobs(m.id)
        state = media_state(jobs)
        if m.webhook_sent_at is not None:
            hook = f"{m.webhook or 'the daemon’s --webhook'} (delivered {J.iso(m.webhook_sent_at)})"
        elif m.webhook_error is not None:
            hook = f"{m.webhook or 'the daemon’s --webhook'} (failed: {m.webhook_error})"
        else:
            hook = m.webhook or "-"
        d = {"id": m.id, "kind": m.kind, "name": m.name, "path": m.path, "probe": m.probe,
             "state": state, "endedAt": J.iso(m.ended_at), "webhook": m.webhook,
             "webhookSentAt": J.iso(m.webhook_sent_at), "webhookError": m.webhook_error,
             "createdAt": J.iso(m.created_at),
             "files": [{"id": f.id, "role": f.role, "name": f.name, "path": f.path,
                        "size": f.size, "createdAt": J.iso(f.created_at)} for f in files],
             "jobs": [{"uuid": j.uuid, "type": j.type, "state": j.state.label} for j in jobs]}
        lines = [f"{k + ':':<10}{v}" for k, v in (
            ("ID", m.id), ("Kind", m.kind), ("Name", m.name), ("Path", m.path or "-"),
            ("State", state + (f", ended {J.iso(m.ended_at)}" if m.ended_at else "")),
            ("Webhook", hook),
            ("Created", f"{J.iso(m.created_at)} ({ago(m.created_at, self.now)})"))]
        if m.probe:
            lines.append("Probe:")
            lines += ["  " + ln for ln in json.dumps(m.probe, indent=2).splitlines()]
        for role, title in (("input", "Inputs"), ("output", "Outputs")):
            fs = [f for f in files if f.role == role]
            lines.append(f"{title}:" + ("" if fs else " none"))
            if fs:
                lines += ["  " + ln for ln in table(["NAME", "SIZE", "PATH"], [
                    [f.name, human_size(f.size), f.path] for f in fs]).splitlines()]
        lines.append("Jobs:" + ("" if jobs else " none"))
        if jobs:
            lines += ["  " + ln for ln in table(["UUID", "TYPE", "RESOLUTION", "STATE"], [
                [j.uuid, j.type, (j.payload.get("output") or {}).get("resolution"),
                 j.state.label + (f" {j.progress}%" if j.progress is not None else "")]
                for j in jobs]).splitlines()]
        self.emit(d, "\n".join(lines))

    async def media_submit(self, opts):
        from choir_protocol.runners.publishing import NotMedia
        from choir_twisted.publishing.media_errors import not_media_reason
        from choir_twisted.publishing.publisher import submit_media
        path = opts["file"]
        if not os.path.isfile(path):
            raise AdminError(f"no such file {path!r}")
        name = opts["name"] or os.path.splitext(os.path.basename(path))[0]
        settings = attrs.evolve(J.DEFAULT_SETTINGS, resolutions=opts["resolutions"])
        try:
            media, jobs = await submit_media(self.store, self.data_dir, os.path.abspath(path),
                                             name, opts["webhook"], settings=settings)
        except NotMedia as e:  # ffprobe's words name the file again: once is enough
            reason = not_media_reason(e, path, what=path)
            raise AdminError(reason if reason.startswith(path) else f"{path}: {reason}")
        rows = [[j.uuid, j.type, (j.payload.get("output") or {}).get("resolution"),
                 j.state.label] for j in jobs]
        self.emit({"id": media.id, "name": media.name, "probe": media.probe,
                   "jobs": [{"uuid": j.uuid, "type": j.type, "state": j.state.label,
                             "resolution": r[2]} for j, r in zip(jobs, rows)]},
                  f"Media {media.id} ({media.name}): {len(jobs)} jobs\n"
                  + table(["UUID", "TYPE", "RESOLUTION", "STATE"], rows))

    async def media_studio(self, opts):
        from choir_protocol.runners.studio import StudioError
        from choir_twisted.publishing.studio import NotEditable, edit_media
        m = await self.store.get_media(opts["id"])
        if m is None:
            m = resolve(await self.store.list_media(), opts["id"], "media")
        uploads = {t["options"]["file"]: (t["options"]["file"], t["options"]["file"])
                   for t in opts["tasks"] if "file" in t["options"]}
        try:
            jobs = await edit_media(self.store, self.data_dir, m, opts["tasks"], uploads)
        except (StudioError, NotEditable) as e:
            raise AdminError(f"media {m.id}: {e}")
        self.emit_edit(m.id, [{"uuid": j.uuid, "type": j.type, "state": j.state.label,
                               "resolution": (j.payload.get("output") or {}).get("resolution")}
                              for j in jobs])

    # API tokens
    async def api_tokens_create(self, opts):
        where = hints.daemon_url(opts["url"], data_dir=self.data_dir)
        tok = await self.store.create_api_token(opts["name"])
        command = hints.upload_command(where.url, tok.token)
        self.emit({"token": tok.token, "name": tok.name, "createdAt": J.iso(tok.created_at),
                   "url": where.url, "urlGuessed": where.guessed, "uploadCommand": command},
                  f"API token: {tok.token}\n(shown only now: the daemon keeps only its "
                  f"hash)\n\n" + hints.upload_text(command, where))

    async def api_tokens_list(self, opts):
        tokens = await self.store.list_api_tokens(include_revoked=opts["all"])
        self.emit([{"prefix": t.prefix, "name": t.name, "createdAt": J.iso(t.created_at),
                    "revoked": t.revoked} for t in tokens],
                  table(["PREFIX", "NAME", "CREATED", "REVOKED"],
                        [[t.prefix, t.name, ago(t.created_at, self.now),
                          "yes" if t.revoked else "no"] for t in tokens])
                  if tokens else "No API tokens (create one with 'api-tokens create').")

    async def api_tokens_revoke(self, opts):
        tok = live_token(await self.store.list_api_tokens(), opts["token"], "API token")
        if not await self.store.revoke_api_token_hash(tok.token_hash):
            raise AdminError(f"API token {tok.prefix} was revoked meanwhile")
        self.emit({"revoked": tok.prefix, "name": tok.name},
                  f"Revoked API token {tok.prefix} ({tok.name}).")

    # operator tokens
    async def operator_tokens_create(self, opts):
        where = hints.daemon_url(opts["url"], data_dir=self.data_dir)
        tok, secret = await self.store.create_operator_token(opts["name"])
        self.emit({"id": tok.id, "name": tok.name, "token": secret,
                   "createdAt": J.iso(tok.created_at), "url": where.url,
                   "urlGuessed": where.guessed},
                  f"Operator token {tok.id} ({tok.name}): shown only now, the daemon keeps "
                  f"only its hash.\n" + hints.operator_text(where) + f"\n{secret}\n")

    async def operator_tokens_list(self, opts):
        tokens = await self.store.list_operator_tokens(include_revoked=opts["all"])
        self.emit([{"id": t.id, "name": t.name, "createdAt": J.iso(t.created_at),
                    "lastUsedAt": J.iso(t.last_used_at), "revoked": t.revoked} for t in tokens],
                  table(["ID", "NAME", "CREATED", "LAST USED", "REVOKED"],
                        [[t.id[:8], t.name, ago(t.created_at, self.now),
                          ago(t.last_used_at, self.now), "yes" if t.revoked else "no"]
                         for t in tokens])
                  if tokens else "No operator tokens (create one with 'operator-tokens "
                                 "create').")

    async def operator_tokens_revoke(self, opts):
        tok = resolve(await self.store.list_operator_tokens(include_revoked=True), opts["id"],
                       "operator token")
        if not await self.store.revoke_operator_token(tok.id):
            raise AdminError(f"operator token {tok.id} is already revoked")
        self.emit({"revoked": tok.id, "name": tok.name},
                  f"Revoked operator token {tok.id} ({tok.name}).")


# which commands may create the database (in an existing data directory)
WRITE_CREATES = {("tokens", "create"), ("api-tokens", "create"), ("media", "submit"),
                 ("operator-tokens", "create")}


async def open_store(data_dir, may_create):
    from choir_twisted.store.store import DB_NAME, Store
    path = os.path.join(data_dir, DB_NAME)
    if not os.path.isdir(data_dir):
        raise AdminError(f"no data directory {os.path.abspath(data_dir)!r}: start the daemon "
                         f"(twistd -n choir --data-dir ...) or pass --data-dir")
    if not may_create and not os.path.isfile(path):
        raise AdminError(f"no store {os.path.abspath(path)!r}: the daemon has not run with "
                         f"this data directory (pass --data-dir?)")
    return await Store.open(path)
