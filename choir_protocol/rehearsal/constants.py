"""Numbers fixed by the online-choir 1.1.3 wire protocol (see docs/protocol.md)."""
import enum

SAMPLE_RATE = 44_100
FRAMES_PER_CHUNK = 512
CHUNKS_PER_SECOND = SAMPLE_RATE / FRAMES_PER_CHUNK  # about 86.13

INDEX_MULTIPLIER = 199
INDEX_BYTES = 4

# Chunk sizes on the wire, index included.
TRACK_CHUNK_SIZE = 516  # director -> server -> singers: stereo IMA ADPCM (256 left + 256 right)
VOICE_CHUNK_SIZE = 260  # singer -> server: mono IMA ADPCM
MIX_CHUNK_SIZE = 1028  # server -> director: 512 samples of 16-bit little-endian PCM

HEADER_SIZE = 512

# Timings of the 1.1.3 protocol.
KEEPALIVE_INTERVAL = 10.0  # seconds of silence on a link before a keep-alive is sent
IDLE_TIMEOUT = 30.0  # seconds without any chunk before a link is dropped
CHECK_IN_TIMEOUT = 5.0  # seconds after chunk 0 for at least one singer to check in

# The director stays at most this many chunks ahead of the mix it has received (6 s).
DIRECTOR_LEAD_CHUNKS = int(6 * CHUNKS_PER_SECOND)  # 516
# 1.1.3's mix window: 6 s in flight minus the singer's 1 s playback buffer minus 1 s margin.
MIX_WINDOW_CHUNKS = DIRECTOR_LEAD_CHUNKS - 2 * int(CHUNKS_PER_SECOND)  # 344

VOCAL_GROUPS = ("No group", "Soprano", "Mezzo", "Alto", "Tenor", "Baritone", "Bass")


class Signal(enum.IntEnum):
    """Negative chunk indices carry signals; their payload is ignored."""

    END = -1  # director: end of track; server to singer: end of session; singer: check-in
    ABORT = -2  # singer: drops out; server to director: session refused or aborted
    KEEPALIVE = -3
    # Ours, not 1.1.3's: server to a client, "refused, and here is why" (UTF-8 text in the
    # payload, zero-padded). Sent only to our own clients, which name themselves in the header.
    REFUSED = -4


CHECK_IN = Signal.END  # the singer's check-in shares the value of END
