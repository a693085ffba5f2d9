"""The sound card choir-singer uses, and the calibration that goes with it.

A card is a real one (PortAudio: the system's default, or devices named with
--input-device / --output-device) or the built-in simulated card of ``--simulate MS``
(``simulated_devices.SimulatedCard``); ``--input-file`` uses neither (``simulated_devices.SilentCard`` paces
the stream, the recording replaces the microphone).

Where calibrations are kept, in the singer's config: the real card's in ``calibration``;
each simulated card's in ``simulated_calibrations`` under its name ("simulated 150 ms"),
so that trying the simulator never loses the real card's calibration.

A real card's calibration keeps the devices as given (None: the default) and, in
``input_card`` / ``output_card``, what PortAudio resolved them to ("system (JACK Audio
Connection Kit)"). Devices given differently (by name, by number, or left to the default)
that resolve to the same cards are the same card.
"""
import attrs
import numpy as np

SIMULATED = "simulated_calibrations"


class NotCalibrated(Exception):
    """Singing cannot start: no calibration for this card; the message says what to run."""


def _device_key(name) -> str | None:
    return None if name in (None, "") else str(name)


def _describe_device(name) -> str:
    return "the default device" if name is None else repr(name)


@attrs.frozen
class Card:
    """The card asked for: devices as given or remembered, or a simulated card."""

    input_device: str | None = None
    output_device: str | None = None
    simulate_ms: float | None = None

    @property
    def name(self) -> str | None:
        """The simulated card's name, which keys its calibration; None for a real card."""
        if self.simulate_ms is None:
            return None
        from .simulated_devices import simulated_card_name
        return simulated_card_name(self.simulate_ms)

    def describe(self) -> str:
        if self.name is not None:
            return f"the {self.name} card"
        return (f"input {_describe_device(self.input_device)}, output "
                f"{_describe_device(self.output_device)}")

    def calibrate_command(self) -> str:
        """The exact command that calibrates this card."""
        if self.simulate_ms is not None:
            return f"choir-singer calibrate --simulate {self.simulate_ms:g}"
        command = "choir-singer calibrate"
        if self.input_device is not None:
            command += f" --input-device {self.input_device!r}"
        if self.output_device is not None:
            command += f" --output-device {self.output_device!r}"
        return command

    def open(self, device_factory):
        """The device (DeviceError, or the factory's error, if it cannot be used)."""
        if self.simulate_ms is not None:
            from .simulated_devices import SimulatedCard
            return SimulatedCard(self.simulate_ms)
        return device_factory(self.input_device, self.output_device)


def sound_card(input_device, output_device):
    """The real card (imports sounddevice, hence PortAudio, only when needed)."""
    from .devices import SoundDevice
    return SoundDevice(input_device=input_device, output_device=output_device)


def chosen_card(options, config) -> Card:
    """--simulate, else the devices given on the command line, else remembered, else None."""
    if options["simulate"] is not None:
        return Card(simulate_ms=options["simulate"])
    return Card(*(_device_key(options[key] if options[key] is not None else config.get(field))
                  for key, field in (("input-device", "input_device"),
                                     ("output-device", "output_device"))))


def card_names(device) -> tuple | None:
    """(input, output): what the device's cards resolve to, or None if it cannot tell."""
    names = getattr(device, "card_names", None)
    if names is not None:
        return tuple(names)
    from .devices import SoundDevice
    if not isinstance(device, SoundDevice):
        return None
    try:
        import sounddevice as sd
        resolved = []
        for kind, spec in (("input", device.input_device), ("output", device.output_device)):
            info = sd.query_devices(spec, kind)
            resolved.append(f"{info['name']} ({sd.query_hostapis(info['hostapi'])['name']})")
        return tuple(resolved)
    except Exception:  # (PortAudio's errors vary; a card it cannot name is matched as typed)
        return None


def stored_calibration(config: dict, card: Card) -> dict:
    """The calibration kept for this card, or NotCalibrated saying what to run."""
    if card.name is not None:
        calibration = (config.get(SIMULATED) or {}).get(card.name)
        what = f"The {card.name} card is not calibrated yet"
    else:
        calibration = config.get("calibration")
        what = "Your sound card is not calibrated yet"
    if not calibration or "latency_samples" not in calibration:
        raise NotCalibrated(f"{what}, so your singing would not line up with the choir. Run "
                            f"`{card.calibrate_command()}` first.")
    return calibration


def calibrated_latency(calibration: dict, card: Card, device=None) -> int:
    """The latency in samples if ``calibration`` was made for this card (the same devices
    as given, or the same cards as ``device`` resolves to), else NotCalibrated."""
    if card.name is not None:  # (found by its name: it is this card's)
        return int(calibration["latency_samples"])
    devices = (_device_key(calibration.get("input_device")),
               _device_key(calibration.get("output_device")))
    if devices == (card.input_device, card.output_device):
        return int(calibration["latency_samples"])
    cards = (calibration.get("input_card"), calibration.get("output_card"))
    if None not in cards and device is not None and card_names(device) == cards:
        return int(calibration["latency_samples"])
    made_for = (f"input {_describe_device(devices[0])}, output {_describe_device(devices[1])}"
                + (f": {cards[0]} / {cards[1]}" if None not in cards else ""))
    raise NotCalibrated(
        f"The calibration was made for other sound cards ({made_for}); you chose "
        f"{card.describe()}. Run `{card.calibrate_command()}` first.")


def store_calibration(config: dict, card: Card, device, calibration: dict) -> None:
    """Keep ``calibration`` (latency, confidence, date...) as this card's, in ``config``."""
    if card.name is not None:
        config.setdefault(SIMULATED, {})[card.name] = dict(calibration, device=card.name)
        return
    names = card_names(device) or (None, None)
    config["calibration"] = dict(calibration, input_device=card.input_device,
                                 output_device=card.output_device, input_card=names[0],
                                 output_card=names[1], device=getattr(device, "name", None))


def load_voice(path) -> np.ndarray:
    """The recording to sing: mono float32 at 44.1 kHz, in whole chunks (MediaError)."""
    from .media import load_track

    track = load_track(path)
    return (track.astype(np.float32).mean(axis=1) / np.float32(32768)).astype(np.float32)
