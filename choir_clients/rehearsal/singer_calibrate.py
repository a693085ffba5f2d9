"""``choir-singer calibrate``: measure the card's round-trip latency and keep it for that card.

Only a measurement that worked is saved, with the devices it was made on (see
singer_cards); a card that fails or an untrustworthy echo saves nothing.
"""
import datetime
import sys

from twisted.internet import threads

from choir_protocol.rehearsal.constants import FRAMES_PER_CHUNK, SAMPLE_RATE

from .singer_cards import chosen_card, sound_card, store_calibration
from .terminal import LineRenderer

PROGRAM = "singer"
EXIT_OK, EXIT_ERROR = 0, 1


def first_line(error) -> str:
    """An error's first line: PortAudio's messages go on with the list of devices."""
    lines = str(error).strip().splitlines()
    text = lines[0].rstrip() if lines else type(error).__name__
    if len(lines) > 1:
        text += " (choir-singer --list-devices lists the sound cards)"
    return text


async def calibrate(reactor, options, *, device_factory=None, out=None, err=None) -> int:
    from ..config import load_config, save_config
    from .calibration import CalibrationError, measure_latency

    out = out or sys.stdout
    err = err or sys.stderr
    card = chosen_card(options, load_config(PROGRAM))
    try:
        device = card.open(device_factory or sound_card)
    except Exception as e:
        err.write(f"Cannot use the sound card: {first_line(e)}\n")
        return EXIT_ERROR
    display = LineRenderer(out, interval=1.0)
    if card.name is not None:
        display.note(f"Calibrating the {card.name} card...")
    else:
        display.note(f"Calibrating: {card.describe()}. Turn the volume up, put your headphones "
                     f"against the microphone (or use loudspeakers) and keep quiet...")

    def progress(*args):
        fraction = args[0] if args and isinstance(args[0], (int, float)) else None
        text = f"measuring... {fraction:.0%}" if fraction is not None else "measuring..."
        reactor.callFromThread(display.status, text)

    try:
        result = await threads.deferToThread(measure_latency, device, seconds=options["seconds"],
                                              progress=progress)
    except CalibrationError as e:
        display.close()
        err.write(f"Calibration failed: {e}\n")
        return EXIT_ERROR
    except Exception as e:
        display.close()
        err.write(f"Calibration failed: the sound card did not work ({first_line(e)}).\n")
        return EXIT_ERROR
    display.close()
    config = load_config(PROGRAM)  # (it may have changed meanwhile)
    if card.name is None:  # the devices that worked are the ones to sing with
        for option, field in (("input-device", "input_device"), ("output-device", "output_device")):
            if options[option] is not None:
                config[field] = options[option]
    store_calibration(config, card, device, {
        "latency_samples": int(result.latency_samples),
        "latency_ms": round(result.latency_samples * 1000 / SAMPLE_RATE, 2),
        "confidence": round(float(result.confidence), 3),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    })
    path = save_config(PROGRAM, config)
    sing = "choir-singer" + (f" --simulate {card.simulate_ms:g}" if card.name else "")
    out.write(f"Latency: {result.latency_samples} samples = "
              f"{result.latency_samples / FRAMES_PER_CHUNK:.2f} chunks = "
              f"{result.latency_samples * 1000 / SAMPLE_RATE:.1f} ms "
              f"(confidence {result.confidence:.2f}).\n"
              f"Saved in {path}. You can sing now: {sing} --server HOST\n")
    return EXIT_OK
