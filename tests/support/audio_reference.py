"""What a perfect daemon returns for a track."""
import numpy as np

from choir_clients.demo.signals import best_lag, broadband_track, mono, snr_db  # noqa: F401
from choir_protocol.rehearsal.adpcm import MonoDecoder, MonoEncoder, StereoDecoder, StereoEncoder
from choir_protocol.rehearsal.constants import FRAMES_PER_CHUNK


def heard_and_sung(track: np.ndarray) -> np.ndarray:
    """The mono signal a daemon gets back from a perfect echoing singer.

    Director: stereo ADPCM; singer: decode, downmix (L+R)>>1, mono ADPCM; daemon:
    decode. Codec states run over the whole track, as on the wire.
    """
    director, singer_in = StereoEncoder(), StereoDecoder()
    singer_out, daemon = MonoEncoder(), MonoDecoder()
    out = []
    for i in range(len(track) // FRAMES_PER_CHUNK):
        chunk = track[i * FRAMES_PER_CHUNK:(i + 1) * FRAMES_PER_CHUNK]
        left, right = singer_in.decode(director.encode(np.ascontiguousarray(chunk[:, 0]).tobytes(),
                                                       np.ascontiguousarray(chunk[:, 1]).tobytes()))
        mono = ((np.frombuffer(left, "<i2").astype(np.int32) + np.frombuffer(right, "<i2")) >> 1)
        out.append(np.frombuffer(daemon.decode(singer_out.encode(mono.astype("<i2").tobytes())), "<i2"))
    return np.concatenate(out)


