"""The store's media and their files (a mixin of ``Store``, on its ``_interact`` and ``_x``;
the jobs of a media are made with ``JobQueries._create_jobs``, in the same transaction)."""
import json
import os
import uuid as uuidlib

import attrs

from .records import JOB_SELECT, Media, MediaFile, job_from_row


class MediaQueries:
    _MEDIA = ("SELECT id, kind, name, path, probe, webhook, created_at, ended_at, "
              "webhook_sent_at, webhook_error FROM media")
    _FILE = "SELECT id, media_id, role, name, path, size, created_at FROM media_files"

    @staticmethod
    def _media(row):
        row = list(row)
        row[4] = json.loads(row[4]) if row[4] is not None else None
        return Media(*row)

    def create_media(self, kind, name, path=None, probe=None, webhook=None, now=None,
                     media_id=None):
        media = Media(media_id or str(uuidlib.uuid4()), kind, name, path, probe, webhook,
                      self.clock() if now is None else now)

        return self._interact(self._insert_media, media)

    def _insert_media(self, cur, media):
        self._x(cur, "INSERT INTO media (id, kind, name, path, probe, webhook, created_at)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (media.id, media.kind, media.name, media.path,
                 None if media.probe is None else json.dumps(media.probe), media.webhook,
                 media.created_at))
        return media

    def publish_media(self, kind, name, path, inputs, job_specs, *, probe=None, webhook=None,
                      media_id=None, now=None):
        """A media, its input files ([path]) and its jobs, in one transaction: no media
        without its jobs, whatever crashes. -> (Media, [Transition])."""
        now = self.clock() if now is None else now
        media = Media(media_id or str(uuidlib.uuid4()), kind, name, path, probe, webhook, now)

        def go(cur):
            self._insert_media(cur, media)
            for f in inputs:
                self._insert_file(cur, MediaFile(str(uuidlib.uuid4()), media.id, "input",
                                                 os.path.basename(f), f, os.path.getsize(f),
                                                 now))
            return media, self._create_jobs(
                cur, [{"media_id": media.id, **spec} for spec in job_specs], now)
        return self._interact(go)

    def get_media(self, media_id):
        def go(cur):
            row = self._x(cur, self._MEDIA + " WHERE id = ?", (media_id,)).fetchone()
            return self._media(row) if row else None
        return self._interact(go)

    def list_media(self):
        return self._interact(lambda cur: [self._media(r) for r in self._x(
            cur, self._MEDIA + " ORDER BY created_at").fetchall()])

    def update_media(self, media_id, *, probe=None, path=None, webhook=None):
        def go(cur):
            for col, val in (("probe", None if probe is None else json.dumps(probe)),
                             ("path", path), ("webhook", webhook)):
                if val is not None:
                    self._x(cur, f"UPDATE media SET {col} = ? WHERE id = ?", (val, media_id))
        return self._interact(go)

    def delete_media(self, media_id):
        return self._interact(lambda cur: self._x(
            cur, "DELETE FROM media WHERE id = ?", (media_id,)).rowcount == 1)

    def add_media_file(self, media_id, role, name, path, size=None, now=None):
        f = MediaFile(str(uuidlib.uuid4()), media_id, role, name, path, size,
                      self.clock() if now is None else now)
        return self._interact(self._insert_file, f)

    def _insert_file(self, cur, f: MediaFile):
        self._x(cur, "INSERT INTO media_files (id, media_id, role, name, path, size, created_at) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)", attrs.astuple(f))
        return f

    def replace_media_file(self, media_id, role, name, path, size=None, now=None):
        """Lists a file in place of those of the same role and name, in one transaction
        (a rendition or playlist made again)."""
        now = self.clock() if now is None else now
        return self._interact(self._replace_file, media_id, role, name, path, size, now)

    def _replace_file(self, cur, media_id, role, name, path, size, now):
        self._x(cur, "DELETE FROM media_files WHERE media_id = ? AND role = ? AND name = ?",
                (media_id, role, name))
        return self._insert_file(cur, MediaFile(str(uuidlib.uuid4()), media_id, role, name,
                                                path, size, now))

    def media_files(self, media_id, role=None):
        def go(cur):
            sql, args = self._FILE + " WHERE media_id = ?", [media_id]
            if role is not None:
                sql, args = sql + " AND role = ?", args + [role]
            return [MediaFile(*r) for r in self._x(cur, sql + " ORDER BY created_at", args).fetchall()]
        return self._interact(go)

    def delete_media_file(self, file_id):
        return self._interact(lambda cur: self._x(
            cur, "DELETE FROM media_files WHERE id = ?", (file_id,)).rowcount == 1)

    def media_by_path(self, path):
        def go(cur):
            row = self._x(cur, self._MEDIA + " WHERE path = ?", (path,)).fetchone()
            return self._media(row) if row else None
        return self._interact(go)

    def media_jobs(self, media_id):
        return self._interact(lambda cur: [job_from_row(r) for r in self._x(
            cur, JOB_SELECT + " WHERE media_id = ? ORDER BY created_at, "
                               "parent_uuid IS NOT NULL, uuid",
            (media_id,)).fetchall()])

    def mark_media_ended(self, media_id, now=None):
        """True for the one caller that marks it (compare-and-set on ended_at IS NULL)."""
        now = self.clock() if now is None else now
        return self._interact(lambda cur: self._x(
            cur, "UPDATE media SET ended_at = ? WHERE id = ? AND ended_at IS NULL",
            (now, media_id)).rowcount == 1)

    def edit_media(self, media_id, plan, now=None):
        """A new round of jobs on a finished media (a studio edit), in one transaction:
        ``plan(jobs)`` gets the media's jobs as they stand in it and returns the job specs
        (or raises); the media is shown processing again and its webhook fires again at the
        end. -> [Transition]."""
        now = self.clock() if now is None else now

        def go(cur):
            jobs = [job_from_row(r) for r in self._x(
                cur, JOB_SELECT + " WHERE media_id = ? ORDER BY created_at",
                (media_id,)).fetchall()]
            specs = plan(jobs)
            self._x(cur, "UPDATE media SET ended_at = NULL, webhook_sent_at = NULL, "
                         "webhook_error = NULL WHERE id = ?", (media_id,))
            return self._create_jobs(cur, [{"media_id": media_id, **s} for s in specs], now)
        return self._interact(go)

    def media_awaiting_webhook(self):
        """Media whose jobs all ended but whose webhook has not been delivered."""
        return self._interact(lambda cur: [self._media(r) for r in self._x(
            cur, self._MEDIA + " WHERE ended_at IS NOT NULL AND webhook_sent_at IS NULL "
                               "ORDER BY ended_at").fetchall()])

    def set_webhook_outcome(self, media_id, sent_at=None, error=None):
        return self._interact(lambda cur: self._x(
            cur, "UPDATE media SET webhook_sent_at = ?, webhook_error = ? WHERE id = ?",
            (sent_at, error, media_id)))
