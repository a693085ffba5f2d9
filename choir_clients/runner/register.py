"""choir-runner's registrations: runner.json's ``registeredInstances``, and the commands
that change them (register, unregister, list-registered).

Each registration is ``{url, runnerToken, name, description}``, as peertube-runner keeps
them. ``register`` tells a wrong ``--url`` from a wrong token: a runner API (ours,
PeerTube's) answers an unknown registration token with a JSON 404; an HTML 404, a 405 or
a 200 that is not JSON comes from something else at that URL.
"""
from urllib.parse import urlsplit

from ..config import ConfigError, load_config, save_config
from ..version import program_version
from .api import RunnerHTTP, ServerProblem, Unreachable

CONFIG = "runner"  # -> runner.json
VERSION = program_version("choir-runner")


class RunnerError(Exception):
    """An operational error: one line on stderr, exit status 1."""


def load_registrations() -> list:
    registrations = load_config(CONFIG).get("registeredInstances", [])
    if not isinstance(registrations, list) or not all(
            isinstance(r, dict) and isinstance(r.get("url"), str)
            and isinstance(r.get("runnerToken"), str) for r in registrations):
        raise ConfigError("the runner configuration's registeredInstances is malformed: "
                          "fix it or delete it")
    return registrations


def save_registrations(registrations: list) -> None:
    config = load_config(CONFIG)
    config["registeredInstances"] = registrations
    save_config(CONFIG, config)


def forget(url: str, name: str) -> None:
    save_registrations([r for r in load_registrations()
                        if not (r["url"] == url and r.get("name") == name)])


def no_runner_api(url, status) -> RunnerError:
    parts = urlsplit(url)
    example = f"{parts.scheme}://{parts.netloc}" if parts.path.strip("/") else \
        "http://host:8000"
    return RunnerError(f"no runner API at {url} (HTTP {status}): check --url (it is the "
                       f"server's base URL, e.g. {example})")


def _server_error(url, e) -> RunnerError:
    if isinstance(e, Unreachable):
        return RunnerError(f"cannot reach {url}: {str(e).split(': ', 1)[-1]}")
    if not e.from_api:  # an HTML 404, a 405, a 501...: not a runner API's answer
        if e.status in (502, 503, 504):
            return RunnerError(f"{url}: HTTP {e.status} from a proxy: the server behind it "
                               f"did not answer (is it running?)")
        return no_runner_api(url, e.status)
    # a runner API answers an unknown token with a JSON 404 (ours and PeerTube's with a code)
    if e.code == "unknown_registration_token" or (e.status == 404 and e.code is None):
        return RunnerError(f"{url} does not know this registration token")
    return RunnerError(f"{url} refused: {e.detail}")


async def register(reactor, opts, out) -> None:
    url, name = opts["url"], opts["runner-name"]
    registrations = load_registrations()
    if any(r["url"] == url and r.get("name") == name for r in registrations):
        raise RunnerError(f"already registered with {url} as {name!r} "
                          "(choir-runner unregister first)")
    api = RunnerHTTP(reactor, url)
    try:
        answer = await api.register(opts["registration-token"], name,
                                    opts["runner-description"], VERSION)
    except (ServerProblem, Unreachable) as e:
        raise _server_error(url, e) from None
    finally:
        await api.close()
    if not isinstance(answer, dict) or not isinstance(answer.get("runnerToken"), str):
        raise no_runner_api(url, 200)  # a server that answers anything with 200
    registrations.append({"url": url, "runnerToken": answer["runnerToken"], "name": name,
                          "description": opts["runner-description"]})
    save_registrations(registrations)
    out.write(f"Registered with {url} as {name!r}.\n")


async def unregister(reactor, opts, out) -> None:
    url, name = opts["url"], opts["runner-name"]
    registration = next((r for r in load_registrations()
                         if r["url"] == url and r.get("name") == name), None)
    if registration is None:
        raise RunnerError(f"not registered with {url} as {name!r} (see list-registered)")
    api = RunnerHTTP(reactor, url, registration["runnerToken"])
    try:
        await api.unregister()
    except ServerProblem as e:
        if e.code != "unknown_runner_token":
            raise _server_error(url, e) from None
        out.write(f"{url} had already forgotten this runner.\n")
    except Unreachable as e:
        raise _server_error(url, e) from None
    finally:
        await api.close()
    forget(url, name)
    out.write(f"Unregistered from {url} ({name!r}).\n")


def list_registered(out) -> None:
    registrations = load_registrations()
    if not registrations:
        out.write("Not registered with any server (choir-runner register ...).\n")
        return
    rows = [("URL", "NAME", "DESCRIPTION")] + [
        (r["url"], r.get("name") or "", r.get("description") or "") for r in registrations]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() + "\n")
