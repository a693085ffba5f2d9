"""The programs that talk to the daemon: one sub-package per program (rehearsal clients,
runner, admin, demo), sharing only cli and config."""
