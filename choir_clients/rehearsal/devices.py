"""Audio devices: the contract every device keeps, and a real sound card (sounddevice).
The simulated ones are in ``simulated_devices``.

All of them follow the contract of ``choir_clients.rehearsal.audio``: ``open(callback,
finished=None)`` returns an AudioStream; once started, the stream calls
``callback(indata, outdata, status)`` once per 512-frame block on a thread of its
own, with ``indata`` the microphone, (512, 1) float32, and ``outdata`` the (512, 2)
float32 block to play, to be filled by the callback. As with sounddevice, both
arrays are only valid during the call (copy what you keep) and ``outdata`` must be
filled completely.

The callback ends the stream by raising ``CallbackStop`` (the block it has just
filled is still played). ``finished``, if given, is called once each time the
stream ends, whatever the cause (CallbackStop, ``stop()``, ``close()``, an error
in the callback), on the device's thread or on the thread that stopped it. Do not
call ``stop()``/``close()`` from ``finished``. An exception other than
CallbackStop raised by the callback ends the stream too; it is logged and kept
in the stream's ``error`` attribute.

Latency: a device's round-trip latency counts in stream positions: what the
callback writes at output position *t* (block *k*, frame *j*: ``t = 512 k + j``)
comes back in the input at position ``t + latency``. As ``indata`` of a block is
delivered before its ``outdata`` is filled, no duplex callback device can have a
latency below one block (512 frames); EchoDevice therefore requires
``latency_samples >= 512``.
"""
import logging

import numpy as np

from choir_protocol.rehearsal.constants import SAMPLE_RATE

from .audio import BLOCK, INPUT_CHANNELS, OUTPUT_CHANNELS, AudioDevice, AudioStream, StreamStatus

log = logging.getLogger(__name__)

BLOCK_SECONDS = BLOCK / SAMPLE_RATE


class DeviceError(Exception):
    """A sound device that does not exist, cannot do what we need, or no PortAudio."""


class CallbackStop(Exception):
    """Raised by a stream callback to end the stream (like sounddevice.CallbackStop)."""


def _sounddevice():
    """Import sounddevice on first use (it loads PortAudio, which may be missing)."""
    try:
        import sounddevice
    except OSError as e:  # sounddevice raises OSError when libportaudio cannot be loaded
        raise DeviceError(f"PortAudio is not available ({e}): install it "
                          "(Debian/Ubuntu: sudo apt-get install libportaudio2)") from e
    except ImportError as e:
        raise DeviceError(f"the sounddevice module is missing ({e}): pip install sounddevice") from e
    return sounddevice


def list_devices() -> str:
    """A readable table of the sound devices PortAudio sees."""
    sd = _sounddevice()
    devices = sd.query_devices()
    hostapis = sd.query_hostapis()
    defaults = []
    for kind in ("input", "output"):
        try:
            defaults.append(sd.query_devices(kind=kind)["index"])
        except (ValueError, sd.PortAudioError):
            defaults.append(-1)
    default_in, default_out = defaults
    if not len(devices):
        return "No sound devices found."
    name_width = max(4, *(len(d["name"]) for d in devices))
    api_width = max(8, *(len(hostapis[d["hostapi"]]["name"]) for d in devices))
    lines = [f"    {'#':>3}  {'name':<{name_width}}  {'host API':<{api_width}}  {'in':>3}  {'out':>3}  rate"]
    for index, d in enumerate(devices):
        mark = {(True, True): "*", (True, False): ">", (False, True): "<"}.get(
            (index == default_in, index == default_out), " ")
        lines.append(f"  {mark} {index:>3}  {d['name']:<{name_width}}  "
                     f"{hostapis[d['hostapi']]['name']:<{api_width}}  {d['max_input_channels']:>3}  "
                     f"{d['max_output_channels']:>3}  {d['default_samplerate']:g}")
    lines.append("  (> default input, < default output, * both; give a device by number or by a part of its name)")
    return "\n".join(lines)


def _device_spec(device):
    """An index, a name (sub)string, or None; a string of digits counts as an index."""
    if isinstance(device, str) and device.strip().isdigit():
        return int(device)
    return device


class SoundDevice(AudioDevice):
    """A real sound card through sounddevice (PortAudio): 44.1 kHz, mono in, stereo out.

    ``need_input=False`` (playback only) or ``need_output=False`` (recording only) opens a
    one-way stream, so a machine without a microphone (or without speakers) can still
    play (or record); the callback contract is the same: ``indata`` is then silence and
    what the callback writes to ``outdata`` is dropped."""

    def __init__(self, input_device=None, output_device=None, *, need_input=True,
                 need_output=True):
        if not (need_input or need_output):
            raise ValueError("a sound device needs an input, an output or both")
        sd = _sounddevice()
        self.input_device = _device_spec(input_device)
        self.output_device = _device_spec(output_device)
        self.need_input, self.need_output = need_input, need_output
        kinds = []  # only the directions used are checked: a missing microphone is no error
        if need_input:
            kinds.append(("input", self.input_device, INPUT_CHANNELS, sd.check_input_settings))
        if need_output:
            kinds.append(("output", self.output_device, OUTPUT_CHANNELS, sd.check_output_settings))
        for kind, device, channels, check in kinds:
            if device is None:
                try:
                    sd.query_devices(kind=kind)
                except (ValueError, sd.PortAudioError) as e:
                    raise DeviceError(f"there is no default {kind} device: name one.\n"
                                      f"Available devices:\n{list_devices()}") from e
            try:
                check(device=device, channels=channels, dtype="float32", samplerate=SAMPLE_RATE)
            except (ValueError, sd.PortAudioError) as e:
                which = "the default " + kind + " device" if device is None else f"{kind} device {device!r}"
                raise DeviceError(f"cannot use {which} for {channels}-channel {kind} at "
                                  f"{SAMPLE_RATE} Hz: {e}\nAvailable devices:\n{list_devices()}") from e
        names = []
        for kind, device, _channels, _check in kinds:
            try:
                names.append(sd.query_devices(device, kind)["name"])
            except (ValueError, sd.PortAudioError):
                names.append(str(device))
        self.name = names[0] if len(set(names)) == 1 else f"{names[0]} / {names[1]}"

    def open(self, callback, finished=None) -> AudioStream:
        return _SoundDeviceStream(self, callback, finished)

    def __repr__(self):
        return (f"SoundDevice({self.input_device!r}, {self.output_device!r}, "
                f"need_input={self.need_input}, need_output={self.need_output})")


class _SoundDeviceStream(AudioStream):
    def __init__(self, device: SoundDevice, callback, finished):
        sd = _sounddevice()
        self.error = None
        self._callback = callback
        self._finished = finished

        silence = np.zeros((BLOCK, INPUT_CHANNELS), np.float32)  # the input of a playback stream
        dropped = np.zeros((BLOCK, OUTPUT_CHANNELS), np.float32)  # the output of a recording one

        def sd_callback(indata, outdata, frames, _time, status):
            if indata is None:
                indata = silence
                indata.fill(0)  # (the callback may have written to it)
            if outdata is None:
                outdata = dropped
            try:
                callback(indata, outdata, StreamStatus(input_overflow=bool(status.input_overflow),
                                                       output_underflow=bool(status.output_underflow)))
            except CallbackStop:
                raise sd.CallbackStop from None
            except Exception as e:
                self.error = e
                log.exception("error in the audio callback: the stream stops")
                outdata.fill(0)
                raise sd.CallbackAbort from None

        def sd_finished():
            if finished is not None:
                try:
                    finished()
                except Exception:
                    log.exception("error in the stream's finished callback")

        common = dict(samplerate=SAMPLE_RATE, blocksize=BLOCK, dtype="float32",
                      finished_callback=sd_finished)
        try:
            if device.need_input and device.need_output:
                self._stream = sd.Stream(channels=(INPUT_CHANNELS, OUTPUT_CHANNELS),
                                         device=(device.input_device, device.output_device),
                                         callback=sd_callback, **common)
            elif device.need_output:
                self._stream = sd.OutputStream(
                    channels=OUTPUT_CHANNELS, device=device.output_device,
                    callback=lambda outdata, *rest: sd_callback(None, outdata, *rest), **common)
            else:
                self._stream = sd.InputStream(
                    channels=INPUT_CHANNELS, device=device.input_device,
                    callback=lambda indata, *rest: sd_callback(indata, None, *rest), **common)
        except (ValueError, sd.PortAudioError) as e:
            raise DeviceError(f"cannot open {device.name}: {e}\nAvailable devices:\n{list_devices()}") from e

    @property
    def latency(self):
        """PortAudio's own (input, output) latency estimate, in seconds."""
        return self._stream.latency

    @property
    def active(self) -> bool:
        return self._stream.active

    def start(self) -> None:
        self._stream.start()

    def stop(self) -> None:
        self._stream.stop()

    def close(self) -> None:
        self._stream.close()
