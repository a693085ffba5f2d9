"""Chunk framing: a 4-byte big-endian index (times 199), then a fixed-size payload."""
import struct

from ..errors import ProtocolError
from .constants import INDEX_BYTES, INDEX_MULTIPLIER, Signal

_INDEX = struct.Struct(">i")
_pack_index = _INDEX.pack
_unpack_index = _INDEX.unpack_from

MAX_INDEX = (2**31 - 1) // INDEX_MULTIPLIER


def encode_index(index: int) -> bytes:
    return _pack_index(index * INDEX_MULTIPLIER)


def decode_index(chunk, offset: int = 0) -> int:
    (raw,) = _unpack_index(chunk, offset)
    index, rest = divmod(raw, INDEX_MULTIPLIER)
    if rest:
        raise ProtocolError(f"chunk index {raw} is not a multiple of {INDEX_MULTIPLIER}")
    return index


def signal_chunk(signal: int, size: int) -> bytes:
    """A signal chunk still has the full size; its payload is zeros."""
    return encode_index(signal) + bytes(size - INDEX_BYTES)


def refusal_chunk(reason: str, size: int) -> bytes:
    """Signal -4 with ``reason`` as its payload (cut on a character boundary to fit)."""
    text = reason.encode("utf-8")[:size - INDEX_BYTES].decode("utf-8", "ignore").encode("utf-8")
    return encode_index(Signal.REFUSED) + text.ljust(size - INDEX_BYTES, b"\0")


def refusal_reason(chunk: bytes) -> str:
    return chunk[INDEX_BYTES:].rstrip(b"\0").decode("utf-8", "replace")


class ChunkReader:
    """Cuts a byte stream, split anywhere, into whole chunks of one size.

    Holds at most one partial chunk, so memory stays bounded whatever the peer sends.
    """

    __slots__ = ("size", "_partial")

    def __init__(self, size: int):
        self.size = size
        self._partial = b""

    @property
    def pending(self) -> int:
        """Bytes of an incomplete chunk held back."""
        return len(self._partial)

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Return the (index, chunk) pairs completed by ``data``, in order.

        A chunk is returned whole (index bytes included) so that it can be
        forwarded or decoded without copying. Raises ProtocolError on an index
        that is not a multiple of 199; the chunks before it are lost with the
        connection, as the stream can no longer be trusted.
        """
        if self._partial:
            data = self._partial + data
        size = self.size
        end = len(data) - len(data) % size
        self._partial = data[end:]
        if end == size:  # the common case of one chunk per read
            return [(decode_index(data), data if len(data) == size else data[:size])]
        return [(decode_index(data, start), data[start:start + size]) for start in range(0, end, size)]
