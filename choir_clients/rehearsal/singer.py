"""choir-singer: sing in an online choir rehearsal from a terminal.

``choir-singer calibrate`` measures the sound card's round-trip latency once (the
time from the speakers to the microphone); ``choir-singer --server HOST`` then
connects to the rehearsal server and sings every session the director starts: it
plays the director's track, records the singer and sends the recording labelled so
that the server lines it up with everyone else, to the sample.

The client is in singer_client (its audio thread in singer_audio, a session as the sound
card lives it in singer_session). Beside: the command line (singer_options), the card and its calibration (singer_cards:
a real card, ``--simulate``'s simulated one, or ``--input-file``'s recording), and the
calibrate command (singer_calibrate). What was given on the command line is saved only
once a server accepted the singer, so a value that does not work is never remembered.
"""
import getpass
import sys

from twisted.internet import task, threads

from choir_protocol.addresses import AddressError, parse_server
from choir_protocol.rehearsal.constants import SAMPLE_RATE, VOCAL_GROUPS
from choir_protocol.rehearsal.header import Header

from ..version import program_version
from .singer_calibrate import EXIT_ERROR, EXIT_OK, PROGRAM, calibrate, first_line
from .singer_cards import (NotCalibrated, calibrated_latency, chosen_card, load_voice,  # noqa: F401
                           sound_card, stored_calibration)
from .singer_client import SingerClient
from .singer_options import (DEFAULT_PORT, DEFAULT_SERVER, CalibrateOptions, Options,  # noqa: F401
                             given_settings, parse)
from .terminal import LineRenderer

EXIT_UNCALIBRATED = 2


def _version() -> str:
    return program_version("choir-singer")


# -- commands -------------------------------------------------------------------------------

def server_address(options, config) -> tuple:
    """(host, port): given (--server may carry the port), else remembered, else the defaults."""
    from ..config import ConfigError

    port = options["port"]
    if options["server"] is not None:
        host = options["server"]
    else:  # (an older choir-singer may have remembered "host:port")
        remembered = str(config.get("server") or DEFAULT_SERVER)
        try:
            host, remembered_port = parse_server(remembered, None)
        except AddressError as e:
            raise ConfigError(f"the remembered server is not usable ({e}): give --server") from None
        port = port or remembered_port
    try:
        return host, int(port or config.get("port") or DEFAULT_PORT)
    except (TypeError, ValueError):
        raise ConfigError(f"the remembered port {config.get('port')!r} is not a number: give "
                          f"--port") from None


def _remember(settings: dict, display) -> None:
    """Save what was given on the command line, now that the server accepted it."""
    from ..config import ConfigError, load_config, save_config

    if not settings:
        return
    try:
        config = load_config(PROGRAM)
        config.update(settings)
        save_config(PROGRAM, config)
    except ConfigError as e:
        display.note(f"Could not remember your settings: {e}")


async def _voice_and_card(options, config, device_factory, err):
    """(voice or None, device, latency samples), or the exit status if singing cannot start."""
    from .media import MediaError
    from .simulated_devices import SilentCard

    if options["input-file"] is not None:
        try:
            voice = await threads.deferToThread(load_voice, options["input-file"])
        except (MediaError, OSError) as e:
            err.write(f"Cannot sing the recording: {first_line(e)}\n")
            return EXIT_ERROR
        return voice, SilentCard(f"recording {options['input-file']}"), 0
    card = chosen_card(options, config)
    try:
        calibration = stored_calibration(config, card)
        try:
            device = card.open(device_factory)
        except Exception as e:
            err.write(f"Cannot use the sound card: {first_line(e)}\n")
            return EXIT_ERROR
        return None, device, calibrated_latency(calibration, card, device)
    except NotCalibrated as e:
        err.write(f"{e}\n")
        return EXIT_UNCALIBRATED


async def sing(reactor, options, *, device_factory=None, out=None, err=None,
               client_options=None, started=None) -> int:
    """The singing command: returns the exit status once the client stopped. What was given
    on the command line is remembered only once a server accepted the singer."""
    from ..config import load_config

    out = out or sys.stdout
    err = err or sys.stderr
    config = load_config(PROGRAM)
    host, port = server_address(options, config)
    chosen = await _voice_and_card(options, config, device_factory or sound_card, err)
    if isinstance(chosen, int):
        return chosen
    voice, device, latency = chosen
    name = options["name"] or config.get("name") or _login_name()
    group = options["group"] or config.get("group") or VOCAL_GROUPS[0]
    gain = options["gain"] if options["gain"] is not None else float(config.get("gain_db") or 0.0)
    display = LineRenderer(out)
    settings = given_settings(options)
    client = SingerClient(reactor, device, host=host, port=port,
                          header=Header(name, group, _version()), latency_samples=latency,
                          gain_db=gain, display=display, voice=voice,
                          on_accepted=lambda: _remember(settings, display),
                          **(client_options or {}))
    if voice is not None:
        what = (f"singing the recording {options['input-file']} "
                f"({len(voice) / SAMPLE_RATE:.1f} s)")
    else:
        what = (f"sound card {getattr(device, 'name', '?')}, latency {latency} samples "
                f"({latency * 1000 / SAMPLE_RATE:.1f} ms)")
    display.note(f"{_version()}: singing as {name!r} ({group}) on {client._address()}; {what}. "
                 f"Ctrl-C to leave.")
    try:
        client.start()
    except Exception as e:
        err.write(f"Cannot open the sound card: {first_line(e)}\n")
        return EXIT_ERROR
    trigger = reactor.addSystemEventTrigger("before", "shutdown", client.stop)
    if started is not None:
        started(client)
    try:
        return await client.done
    finally:
        try:
            reactor.removeSystemEventTrigger(trigger)
        except (ValueError, KeyError):
            pass


def _login_name() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return ""


async def run(reactor, options, **kwargs) -> int:
    from ..config import ConfigError
    from .devices import DeviceError

    try:
        if options.subCommand == "calibrate":
            return await calibrate(reactor, options.subOptions,
                                   device_factory=kwargs.get("device_factory") or sound_card,
                                   out=kwargs.get("out"), err=kwargs.get("err"))
        if options["list-devices"]:
            from .devices import list_devices
            (kwargs.get("out") or sys.stdout).write(list_devices().rstrip("\n") + "\n")
            return EXIT_OK
        return await sing(reactor, options, **kwargs)
    except (ConfigError, DeviceError) as e:
        (kwargs.get("err") or sys.stderr).write(f"choir-singer: {first_line(e)}\n")
        return EXIT_ERROR


def main(argv=None, *, device_factory=None) -> None:
    """The choir-singer command. ``device_factory(input, output)`` makes the sound card
    (default: SoundDevice); tests pass a simulated one."""
    options = parse(sys.argv[1:] if argv is None else argv)

    async def react_main(reactor):
        code = await run(reactor, options, device_factory=device_factory)
        if code:
            raise SystemExit(code)

    task.react(react_main)


if __name__ == "__main__":
    main()
