"""choir-admin's commands on the daemon's store (``choir.sqlite3`` in its data directory)."""
from collections import Counter
import os

import attrs

from choir_protocol.runners import jobs as J
from choir_protocol.runners.jobs import JobError, JobState
from choir_protocol.runners.publishing import media_state

from . import hints
from .output import AdminError, Output, ago, live_token, resolve, table
from .records import JobBrief, MediaFile, MediaRow, MediaView


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
        used = Counter(r.registration_token_hash for r in await self.store.list_runners())
        self.emit_tokens([(t.id, t.prefix, t.created_at, t.revoked, used[t.token_hash])
                          for t in tokens])

    async def tokens_revoke(self, opts):
        tok = live_token(await self.store.list_registration_tokens(), opts["token"],
                          "registration token")
        if not await self.store.revoke_registration_token_id(tok.id):
            raise AdminError(f"registration token {tok.prefix} was revoked meanwhile")
        self.emit_revoked_token(tok.id, tok.prefix)

    # runners
    async def _processing_by_runner(self):
        return Counter(j.runner_id for j in await self.store.list_jobs(
            states=[JobState.PROCESSING]))

    async def runners_list(self, opts):
        self.emit_runners(await self.store.list_runners(), await self._processing_by_runner())

    async def runners_remove(self, opts):
        runner = resolve(await self.store.list_runners(), opts["id_or_name"], "runner",
                          keys=("id", "name"))
        processing = (await self._processing_by_runner())[runner.id]
        if not await self.store.unregister_runner(runner.id):
            raise AdminError(f"runner {runner.name!r} was removed meanwhile")
        self.emit_removed_runner(runner.id, runner.name, processing)

    # jobs
    async def _job(self, value):
        job = await self.store.get_job(value)
        if job is None:
            job = resolve(await self.store.list_jobs() if len(value) >= 4 else [], value,
                           "job", keys=("uuid",))
        return job

    async def _runner_names(self):
        return {r.id: r.name for r in await self.store.list_runners()}

    async def jobs_list(self, opts):
        jobs = await self.store.list_jobs(states=opts["state"], types=opts["type"],
                                          limit=opts["limit"])
        self.emit_jobs(jobs, await self._runner_names())

    async def jobs_show(self, opts):
        job = await self._job(opts["uuid"])
        self.emit_job(job, await self._runner_names(), await self.store.children(job.uuid))

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
        self.emit_cancelled(job.uuid, tr.previous_state, [c.uuid for c in tr.children])

    # media
    async def _media(self, value):
        media = await self.store.get_media(value)
        if media is None:
            media = resolve(await self.store.list_media(), value, "media")
        return media

    async def _media_row(self, m):
        files = tuple(MediaFile(f.role, f.name, f.size, path=f.path, id=f.id,
                                created_at=f.created_at)
                      for f in await self.store.media_files(m.id))
        return MediaRow(m.id, m.kind, m.name, m.path, m.created_at, files)

    async def media_list(self, opts):
        self.emit_media_list([await self._media_row(m) for m in await self.store.list_media()])

    async def media_show(self, opts):
        m = await self._media(opts["id"])
        jobs = await self.store.media_jobs(m.id)
        self.emit_media(MediaView(await self._media_row(m), m.probe, media_state(jobs),
                                  m.ended_at, tuple(_brief(j) for j in jobs),
                                  webhook=m.webhook, webhook_sent_at=m.webhook_sent_at,
                                  webhook_error=m.webhook_error))

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
        self.emit_submitted(media.id, media.name, media.probe, [_brief(j) for j in jobs])

    async def media_studio(self, opts):
        from choir_protocol.runners.studio import StudioError
        from choir_twisted.publishing.studio import NotEditable, edit_media
        m = await self._media(opts["id"])
        uploads = {t["options"]["file"]: (t["options"]["file"], t["options"]["file"])
                   for t in opts["tasks"] if "file" in t["options"]}
        try:
            jobs = await edit_media(self.store, self.data_dir, m, opts["tasks"], uploads)
        except (StudioError, NotEditable) as e:
            raise AdminError(f"media {m.id}: {e}")
        self.emit_edit(m.id, [_brief(j) for j in jobs])

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


def _brief(job) -> JobBrief:
    return JobBrief(job.uuid, job.type, job.state,
                    (job.payload.get("output") or {}).get("resolution"), job.progress)


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
