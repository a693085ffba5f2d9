"""Mixing-desk messages: a 2-byte big-endian length, then gzip-compressed UTF-8 JSON."""
import gzip
import json
import struct
import zlib

import attrs

from ..errors import ProtocolError

MAX_MESSAGE = 0xFFFF
# A gzip bomb must not blow the memory: no desk message needs more than this.
MAX_DECOMPRESSED = 1 << 20


class MessageTooLong(ValueError):
    pass


def encode_message(message) -> bytes:
    payload = gzip.compress(json.dumps(message).encode("utf-8"))
    if len(payload) > MAX_MESSAGE:
        raise MessageTooLong(f"desk message of {len(payload)} bytes, past {MAX_MESSAGE}")
    return struct.pack(">H", len(payload)) + payload


def encode_list_reply(entries: list) -> tuple[bytes, int]:
    """The reply to "list" and how many singers it holds: all of them, or as many as fit
    in one message (the 1.1.3 desk reads the list as one message, so it cannot be split)."""
    try:
        return encode_message(entries), len(entries)
    except MessageTooLong:
        pass
    fits, too_many = 0, len(entries)  # binary search: gzip's size grows with the entries
    while too_many - fits > 1:
        middle = (fits + too_many) // 2
        try:
            encode_message(entries[:middle])
            fits = middle
        except MessageTooLong:
            too_many = middle
    return encode_message(entries[:fits]), fits


class RequestBudget:
    """A token bucket: ``rate`` requests a second on average, ``burst`` at once.

    Time is an argument, so the rule is tested without a clock."""

    def __init__(self, rate: float, burst: float):
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at = None

    def allow(self, now: float) -> bool:
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


def _gunzip(payload: bytes) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(payload, MAX_DECOMPRESSED)
    except zlib.error as e:
        raise ProtocolError(f"desk message is not gzip: {e}") from None
    if inflater.unconsumed_tail:
        raise ProtocolError(f"desk message inflates past {MAX_DECOMPRESSED} bytes")
    if not inflater.eof:  # cut short: the CRC and length trailer were never checked
        raise ProtocolError("desk message is a truncated gzip stream")
    if inflater.unused_data:
        raise ProtocolError("desk message has data after its gzip stream")
    return data


def decode_payload(payload: bytes):
    try:
        return json.loads(_gunzip(payload).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # e.g. "[[[[..." nested deeply
        raise ProtocolError(f"desk message is not JSON: {e}") from None


class MessageReader:
    """Cuts a byte stream into desk messages (decoded JSON values)."""

    def __init__(self):
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list:
        self._buffer += data
        messages = []
        while len(self._buffer) >= 2:
            (length,) = struct.unpack_from(">H", self._buffer)
            if len(self._buffer) < 2 + length:
                break
            payload = bytes(self._buffer[2:2 + length])
            del self._buffer[:2 + length]
            messages.append(decode_payload(payload))
        return messages


# Requests a desk sends, parsed and checked.

@attrs.frozen
class ListSingers:
    pass


@attrs.frozen
class AdjustGain:
    singer_id: tuple
    gain: float


def parse_request(message):
    """A decoded desk message -> ListSingers or AdjustGain; ProtocolError otherwise."""
    if not isinstance(message, dict):
        raise ProtocolError("desk request must be a JSON object")
    action = message.get("action")
    if action == "list":
        return ListSingers()
    if action == "adjust_gain":
        singer_id = message.get("id")
        gain = message.get("gain")
        if not isinstance(singer_id, list) or not all(isinstance(p, (str, int)) for p in singer_id):
            raise ProtocolError(f"adjust_gain needs an id [host, port], got {singer_id!r}")
        if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not 0 <= gain <= 100:
            raise ProtocolError(f"adjust_gain needs a gain between 0 and 100, got {gain!r}")
        return AdjustGain(tuple(singer_id), float(gain))
    raise ProtocolError(f"unknown desk action {action!r}")
