"""The store: tokens, runners, jobs and media in SQLite (WAL), on adbapi."""
