"""choir-demo's report, from what the daemon recorded: who was mixed, whether each singer is
in time, and where to listen.

Each simulated singer sings a voice of its own (``voices``), so the demo knows each stem
and the mix to expect: a singer is in time when the stem the daemon recorded lines up
with its voice to the sample, and the mix is right when what the director heard lines
up with the mean of the voices of the singers the daemon mixed (the daemon's mixer keeps
the level: each singer counts 1/n). The figures an engineer wants (delays, latencies,
chunks, SNR) come with ``--details``.
"""
import os

import attrs
import numpy as np
import soundfile

from choir_protocol.rehearsal.constants import FRAMES_PER_CHUNK, SAMPLE_RATE
from choir_protocol.rehearsal.session_summary import SingerSummary

from .signals import best_lag, snr_db
from .voices import Voice, expected_stem

# Below this, a stem or mix is not what was sung, however well it lines up (IMA ADPCM,
# applied twice, and the singers' breath leave about 25-30 dB).
MIN_SNR_DB = 15.0


@attrs.frozen
class SingerPlan:
    """One simulated singer: who, behind which link, on which sound card, singing what."""

    name: str
    group: str
    delay: float  # network delay, seconds each way
    jitter: float
    latency: int  # the sound card's round trip, samples
    voice: Voice


@attrs.frozen
class Outcome:
    """One singer, as the daemon recorded it."""

    plan: SingerPlan
    calibrated: int  # the latency calibration measured, samples
    entry: SingerSummary | None = None  # the singer in the daemon's session.json; None: not in it
    mixed: bool | None = None  # None: unknown (the daemon's recordings are elsewhere)
    track: str | None = None  # the singer's own recorded track
    offset: int | None = None  # samples, the recorded track against the singer's voice
    snr: float | None = None  # dB, the recorded track against the singer's voice

    @property
    def missing(self) -> int:
        return self.entry.missing if self.entry is not None else 0

    @property
    def in_time(self) -> bool:
        return bool(self.mixed) and self.offset in (0, None) and (
            self.snr is None or self.snr >= MIN_SNR_DB) and not self.missing

    def verdict(self) -> str:
        entry = self.entry
        state = entry.state if entry is not None else None
        if self.mixed is False:
            if self.entry is None:
                return "not mixed: the daemon did not have this singer when the session began"
            if state == "refused":
                return "not mixed: checked in after the mix had begun"
            if state == "invited":
                return "not mixed: its check-in did not reach the daemon before the end"
            return f"not mixed ({state or 'not in the session'})"
        words = []
        if self.offset is None:
            words.append("mixed")
        elif self.offset == 0:
            words.append("in time")
        else:
            words.append(f"{abs(self.offset)} samples ({abs(self.offset) * 1000 / SAMPLE_RATE:.1f} "
                         f"ms) {'late' if self.offset > 0 else 'early'}")
        if self.snr is not None and self.snr < MIN_SNR_DB:
            words.append(f"but not as sung ({self.snr:.0f} dB from its voice)")
        if self.missing:
            seconds = self.missing * FRAMES_PER_CHUNK / SAMPLE_RATE
            words.append(f"{self.missing} chunks ({seconds:.1f} s) missing")
        if state == "left":
            words.append(f"left at chunk {entry.left_at} ({entry.reason})")
        return ", ".join(words)


@attrs.frozen
class MixCheck:
    """What the director heard, against the voices of the singers the daemon mixed."""

    chunks: int
    track_chunks: int
    offset: int | None  # None: nobody was mixed, nothing to compare
    snr: float | None

    @property
    def right(self) -> bool:
        return (self.offset == 0 and self.snr >= MIN_SNR_DB
                and self.chunks == self.track_chunks)


def outcomes(plans, calibrations, record, desk_mixed, track) -> list:
    """Each singer's Outcome, from ``record`` (the daemon's Record of the session) or, when
    its recordings are elsewhere, from ``desk_mixed`` (a Counter of (name, group) the
    daemon's desk lists in the session), else unknown."""
    entries = list(record.summary.singers if record is not None else ())
    files = _tracks_by_row(record)
    result = []
    for plan, calibrated in zip(plans, calibrations):
        entry = next((e for e in entries
                      if (e.name, e.group) == (plan.name, plan.group)), None)
        if entry is not None:
            entries.remove(entry)  # two singers of the same name each get their own
        if record is None:
            mixed = None
            if desk_mixed is not None:
                mixed = desk_mixed[plan.name, plan.group] > 0
                desk_mixed[plan.name, plan.group] -= mixed
            result.append(Outcome(plan, calibrated, mixed=mixed))
            continue
        mixed = entry is not None and entry.row >= 0 and entry.chunks > 0
        path = files.get(entry.row) if mixed else None
        offset = snr = None
        if path is not None:
            recorded, _ = soundfile.read(path, dtype="int16")
            expected = expected_stem(plan.voice, track)
            offset, snr = _compare(expected, recorded)
        result.append(Outcome(plan, calibrated, entry, mixed, path, offset, snr))
    return result


def _tracks_by_row(record) -> dict:
    """{row: path} of the singers' tracks (``singer-NNN-...flac``, NNN = row + 1)."""
    if record is None:
        return {}
    tracks = {}
    for name in record.summary.files or ():
        number = name[len("singer-"):len("singer-") + 3]
        if name.startswith("singer-") and number.isdigit():
            tracks[int(number) - 1] = os.path.join(record.directory, name)
    return tracks


def _compare(expected, actual):
    n = min(len(expected), len(actual))
    if n < FRAMES_PER_CHUNK:
        return None, None
    return best_lag(expected[:n], actual[:n]), snr_db(expected[:n], actual[:n])


def check_mix(results, track, mix) -> MixCheck:
    track_chunks = len(track) // FRAMES_PER_CHUNK
    voices = [r.plan.voice for r in results if r.mixed is not False]
    if not voices or not len(mix):
        return MixCheck(len(mix) // FRAMES_PER_CHUNK, track_chunks, None, None)
    expected = np.mean([expected_stem(v, track) for v in voices], axis=0)
    offset, snr = _compare(expected, mix)
    return MixCheck(len(mix) // FRAMES_PER_CHUNK, track_chunks, offset, snr)


def all_right(results, mix: MixCheck) -> bool:
    return all(r.in_time for r in results) and mix.right


# -- printing -------------------------------------------------------------------------------

def print_report(results, mix: MixCheck, record, out, *, recordings_hint="") -> None:
    """What a director wants to know: who was mixed, in time or not, how long; then each
    singer in a line."""
    n = len(results)
    mixed = sum(1 for r in results if r.mixed)
    seconds = (record.summary.mix_chunks if record is not None else mix.chunks
               ) * FRAMES_PER_CHUNK / SAMPLE_RATE
    if any(r.mixed is None for r in results):
        who = f"{n} singers (who was mixed is unknown)"
    else:
        who = f"{mixed} of {n} singer{'s' * (n != 1)} mixed"
    off = sum(1 for r in results if r.mixed and not r.in_time)
    if off:
        timing = f"{off} of them not in time"
    elif not all(r.offset is not None for r in results if r.mixed):
        timing = "the mix lines up" if mix.right else "the mix is not right"
    elif not mix.right:
        timing = "but the mix the director heard is not right"
    else:
        timing = "all in time" if mixed == n else "those in time"
    print(f"\nThe rehearsal: {who}, {timing}; {seconds:.1f} s of music.", file=out)
    width = max(len(r.plan.name) for r in results)
    verdicts = [r.verdict() for r in results]
    verdict_width = min(max(len(v) for v in verdicts), 40)
    for r, verdict in zip(results, verdicts):
        print(f"  {r.plan.name:<{width}}  {r.plan.group:<8}  sings {r.plan.voice.note:<3}  "
              f"{verdict:<{verdict_width}}  (network delay {r.plan.delay * 1000:.0f} ms, sound "
              f"card {r.plan.latency * 1000 / SAMPLE_RATE:.0f} ms)", file=out)
    if mix.offset is None:
        print("The director heard no mix of any singer.", file=out)
    elif mix.right:
        print("The mix the director heard lines up with every mixed singer's voice, to the "
              "sample.", file=out)
    elif mix.chunks != mix.track_chunks:
        print(f"The director heard {mix.chunks} of the track's {mix.track_chunks} chunks "
              f"of mix.", file=out)
    else:
        print(f"The mix the director heard is not the singers' voices: {mix.offset} samples "
              f"off, {mix.snr:.0f} dB from them.", file=out)
    if recordings_hint:
        print(recordings_hint, file=out)


def print_listen(record, output, out) -> None:
    """Where to listen: the mix and each singer's track, as the daemon recorded them."""
    lines = []
    if record is not None:
        files = record.summary.files or ()
        if "mix.flac" in files:
            lines.append(("the mix", os.path.join(record.directory, "mix.flac")))
        tracks = [f for f in files if f != "mix.flac"]
        for i, name in enumerate(tracks[:8]):
            lines.append(("each singer alone" if i == 0 else "",
                          os.path.join(record.directory, name)))
        if len(tracks) > 8:
            lines.append(("", f"... and {len(tracks) - 8} more in {record.directory}"))
    if output:
        lines.append(("what the director heard", os.path.abspath(output)))
    if not lines:
        return
    print("\nListen:", file=out)
    width = max(len(label) for label, _ in lines)
    for label, path in lines:
        print(f"  {label:<{width}}  {path}", file=out)


def print_details(results, mix: MixCheck, out) -> None:
    """The engineer's figures (``--details``)."""
    if mix.offset is not None:
        print(f"\nMix: {mix.chunks} of {mix.track_chunks} chunks, offset {mix.offset} samples, "
              f"SNR {mix.snr:.1f} dB against the mixed singers' voices (IMA ADPCM, applied "
              f"twice, and the singers' breath allow about 25-30 dB)", file=out)
    print(f"\n{'singer':<10} {'group':<9} {'note':<4} {'delay':>6} {'jitter':>6} "
          f"{'card latency':>12} {'calibrated':>10} {'chunks':>6} {'late':>5} {'missing':>7} "
          f"{'offset':>6} {'SNR':>7}   (latencies and offsets in samples)", file=out)
    for r in results:
        p, e = r.plan, r.entry
        chunks = (f"{e.chunks:6d} {e.late:5d} {e.missing:7d}"
                  if e is not None else f"{'':6} {'':5} {'':7}")
        offset = "n/a" if r.offset is None else str(r.offset)
        snr = "n/a" if r.snr is None else f"{r.snr:.1f} dB"
        print(f"{p.name:<10} {p.group:<9} {p.voice.note:<4} {p.delay * 1000:4.0f}ms "
              f"{p.jitter * 1000:4.0f}ms {p.latency:12d} {r.calibrated:10d} {chunks} "
              f"{offset:>6} {snr:>7}", file=out)
