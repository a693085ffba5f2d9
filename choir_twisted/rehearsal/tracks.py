"""Per-singer voice journals and their conversion to aligned FLAC tracks.

During a session each singer's audio is appended, as received, to a journal: the
260-byte chunks of the wire (index x 199, 256 bytes of IMA ADPCM). That costs no
CPU on the live path, survives a crash up to the last flush, and is four times
smaller than PCM. When the session ends (or, after a crash, when the daemon
starts again) each journal becomes one FLAC aligned at chunk 0, with silence
where the singer had no audio, and the journal is removed.
"""
import os

import numpy as np
import soundfile

from choir_protocol.rehearsal.adpcm import MonoDecoder
from choir_protocol.rehearsal.chunks import decode_index
from choir_protocol.rehearsal.constants import FRAMES_PER_CHUNK, SAMPLE_RATE, VOICE_CHUNK_SIZE

JOURNAL_SUFFIX = ".chunks"
_READ_CHUNKS = 4096  # journal chunks decoded per step (about 47 s of audio)


def journal_extent(path: str) -> int:
    """One past the last chunk index in a journal (0 if empty)."""
    size = os.path.getsize(path) // VOICE_CHUNK_SIZE * VOICE_CHUNK_SIZE
    if not size:
        return 0
    with open(path, "rb") as f:
        f.seek(size - VOICE_CHUNK_SIZE)
        return decode_index(f.read(4)) + 1


def journal_to_flac(path: str, chunks: int) -> str:
    """Write the FLAC track of journal ``path``, ``chunks`` long; remove the journal."""
    flac = path[:-len(JOURNAL_SUFFIX)] + ".flac"
    decoder = MonoDecoder()
    written = 0  # chunks written to the FLAC so far
    with open(path, "rb") as journal, soundfile.SoundFile(flac + ".part", "w", SAMPLE_RATE, 1,
                                                           "PCM_16", format="FLAC") as out:
        while data := journal.read(_READ_CHUNKS * VOICE_CHUNK_SIZE):
            count = len(data) // VOICE_CHUNK_SIZE  # a torn last chunk is dropped
            indices = [decode_index(data, k * VOICE_CHUNK_SIZE) for k in range(count)]
            payload = b"".join([data[k * VOICE_CHUNK_SIZE + 4:(k + 1) * VOICE_CHUNK_SIZE]
                                for k in range(count)])
            pcm = np.frombuffer(decoder.decode(payload), "<i2").reshape(count, FRAMES_PER_CHUNK)
            # journals are in index order with gaps where the singer sent nothing
            start = max(written, indices[0])
            stop = min(indices[-1] + 1, chunks)
            if stop <= start:
                continue
            block = np.zeros((stop - written, FRAMES_PER_CHUNK), "<i2")
            placed = np.asarray(indices) - written
            keep = (placed >= 0) & (placed < stop - written)
            block[placed[keep]] = pcm[keep]
            out.write(block.reshape(-1))
            written = stop
        if written < chunks:
            out.write(np.zeros((chunks - written) * FRAMES_PER_CHUNK, "<i2"))
    os.replace(flac + ".part", flac)
    os.remove(path)
    return flac


def convert_journals(directory: str, chunks: int) -> list:
    """Convert every journal of a session directory; returns the FLAC names written."""
    journals = sorted(n for n in os.listdir(directory) if n.endswith(JOURNAL_SUFFIX))
    length = max([chunks] + [journal_extent(os.path.join(directory, n)) for n in journals])
    return [os.path.basename(journal_to_flac(os.path.join(directory, n), length)) for n in journals]
