"""The commands choir-admin prints for others to run, with the daemon's real address.

Which URL they name, first found: the command's own ``--url``; choir-admin's ``--url``
when it manages a daemon over HTTP; the address the daemon left in ``DATA_DIR/http-url``
(``choir_twisted.publishing.http_url``: its ``--public-url``, or this host and the port it listens
on); else ``http://<this host's name>:8000``, said to be a guess.
"""
import socket

import attrs

from choir_twisted.publishing.http_url import HTTP_URL_NAME, read_http_url

DEFAULT_PORT = 8000


@attrs.frozen
class DaemonURL:
    url: str
    guessed: bool = False
    data_dir: str = ""

    def note(self) -> str:
        """A line to print under a command naming a guessed URL ("" when it is known)."""
        if not self.guessed:
            return ""
        return (f"({self.url} is a guess, this host's name and the default port: the daemon "
                f"has not written {self.data_dir}/{HTTP_URL_NAME} yet. Pass --url URL to "
                f"name the address it is reached at.)")


def daemon_url(explicit: str | None = None, remote: str | None = None,
               data_dir: str | None = None) -> DaemonURL:
    for url in (explicit, remote, data_dir and read_http_url(data_dir)):
        if url:
            return DaemonURL(url.rstrip("/"))
    return DaemonURL(f"http://{socket.gethostname()}:{DEFAULT_PORT}", True, data_dir or ".")


def register_commands(url: str, token: str, runner_name: str) -> dict:
    """The register line of each runner: ours (README) and PeerTube's, same options."""
    options = f"register --url {url} --registration-token {token} --runner-name {runner_name}"
    return {"choir-runner": f"choir-runner {options}",
            "peertube-runner": f"peertube-runner {options}"}


def registration_text(commands: dict, where: DaemonURL) -> str:
    text = (f"On the runner machine, register choir-runner:\n\n"
            f"    {commands['choir-runner']}\n\n"
            f"or PeerTube's runner (its 'peertube-runner server' must be running first):\n\n"
            f"    {commands['peertube-runner']}\n")
    return text + (f"\n{where.note()}\n" if where.guessed else "")


def upload_command(url: str, token: str) -> str:
    return (f"curl -H 'Authorization: Bearer {token}' -F file=@video.mp4 "
            f"{url}/api/v1/media")


def upload_text(command: str, where: DaemonURL) -> str:
    return (f"Upload with:\n\n    {command}\n"
            + (f"\n{where.note()}\n" if where.guessed else ""))


def operator_text(where: DaemonURL) -> str:
    return (f"Use it from another machine with:\n\n    choir-admin --url {where.url} --token "
            f"<the token below> jobs list\n" + (f"\n{where.note()}\n" if where.guessed else ""))
