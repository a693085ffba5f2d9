"""The director's connection: the track out with 1.1.3's flow control, the mix in.

``DirectorClientProtocol`` drives the core's ``DirectorClientConnection`` from a source
(``playback``: the backing track or the microphone). choir-director runs it, and so do
choir-demo and the tests (``choir_clients.demo.simulated.SimulatedDirector``), so they run
the director's own code.
"""
import numpy as np
from twisted.internet import defer, protocol

from choir_protocol.errors import ProtocolError
from choir_protocol.rehearsal.adpcm import StereoEncoder
from choir_protocol.rehearsal.connections import DirectorClientConnection
from choir_protocol.rehearsal.constants import DIRECTOR_LEAD_CHUNKS, FRAMES_PER_CHUNK, SAMPLE_RATE
from choir_protocol.rehearsal.events import MixChunk, Refused, SessionRefused
from choir_protocol.rehearsal.header import Header

from .director_options import CLIENT_VERSION
from .playback import END

SERVER_SILENCE_TIMEOUT = 45.0  # seconds without a byte from the server (it drops stalled sessions at 30)
FIRST_BYTES_KEPT = 2048  # of the server's answer before any mix: what it is, if not a director port


def chunk_seconds(chunks: int) -> float:
    return chunks * FRAMES_PER_CHUNK / SAMPLE_RATE


class DirectorClientProtocol(protocol.Protocol):
    """The director's connection: the track out with 1.1.3's flow control, the mix in."""

    def __init__(self, reactor, source, lead=DIRECTOR_LEAD_CHUNKS, on_mix=None,
                 idle_timeout=SERVER_SILENCE_TIMEOUT, held=False, header=None):
        self.reactor = reactor  # for the silence timer (none when ``idle_timeout`` is None)
        self.source = source
        self.header = header if header is not None else Header(client_version=CLIENT_VERSION)
        # held: only the header goes out until ``release`` (the daemon opens the session on
        # the first track chunk, and serves the desk to a connected director's address)
        self.held = held
        self.lead = lead
        self.on_mix = on_mix
        self.idle_timeout = idle_timeout
        self.conn = DirectorClientConnection()
        self.encoder = StereoEncoder()
        self.mix = []  # the mix chunks received, 16-bit mono PCM bytes
        self.refused = False
        self.refusal = ""  # the server's words, when it gives them (signal -4)
        self.failure = None  # why the session broke off, if it did
        self.hung_up = False  # the server closed the connection before the end of the mix
        self.timed_out = False  # the server fell silent
        self.first_bytes = b""  # the server's first words, to tell what it is if not a director port
        self.interrupted = False
        self.done = defer.Deferred()
        self._idle = None

    # sending
    def connectionMade(self):
        self.transport.setTcpNoDelay(True)
        self.transport.write(self.conn.initiate(self.header))
        self.source.on_data = self.pump
        if self.idle_timeout is not None:
            self._idle = self.reactor.callLater(self.idle_timeout, self._timed_out)
        self.pump()

    def release(self):
        self.held = False
        if self.transport is not None:
            self.pump()

    def pump(self):
        if self.held or self.conn.track_ended or self.conn.refused or not self.transport.connected:
            return
        out = []
        while self.conn.sent - self.conn.received < self.lead:
            chunk = self.source.take(self.conn.sent)
            if chunk is None:
                break
            if chunk is END:
                out.append(self.conn.end_track())
                break
            payload = self.encoder.encode(np.ascontiguousarray(chunk[:, 0]).tobytes(),
                                          np.ascontiguousarray(chunk[:, 1]).tobytes())
            out.append(self.conn.send_track(self.conn.sent, payload))
        if out:
            self.transport.write(b"".join(out))
        self._close_if_done()

    def stop(self):
        """No more track (Ctrl-C): send the end now; the mix of what was sent still comes."""
        self.interrupted = True
        self.source.close()
        if self.transport is not None and self.transport.connected and not (
                self.conn.track_ended or self.conn.refused):
            if self.conn.sent == 0:
                self.transport.loseConnection()  # nothing was sent: nothing to wait for
                return
            self.transport.write(self.conn.end_track())
            self._close_if_done()

    # receiving
    def dataReceived(self, data):
        if self._idle is not None and self._idle.active():
            self._idle.reset(self.idle_timeout)
        if not self.mix and len(self.first_bytes) < FIRST_BYTES_KEPT:
            self.first_bytes += data[:FIRST_BYTES_KEPT - len(self.first_bytes)]
        try:
            events = self.conn.receive_data(data)
        except ProtocolError as e:
            self.failure = f"the server sent something unexpected ({e})"
            self.transport.abortConnection()
            return
        for event in events:
            if isinstance(event, MixChunk):
                self.mix.append(event.pcm)
                if self.on_mix is not None:
                    self.on_mix(event.index, event.pcm)
            elif isinstance(event, (SessionRefused, Refused)):
                self.refused = True
                self.refusal = getattr(event, "reason", "")
                self.transport.loseConnection()
                return
        if not self._close_if_done():
            self.pump()

    def _close_if_done(self) -> bool:
        if self.conn.done:
            self.transport.loseConnection()
            return True
        return False

    def _timed_out(self):
        self.failure = f"the server sent nothing for {self.idle_timeout:g} s"
        self.timed_out = True
        self.transport.abortConnection()

    def connectionLost(self, reason):
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self.source.on_data = None
        self.source.close()
        if not (self.conn.done or self.refused or self.failure or (self.interrupted and not self.conn.sent)):
            self.failure = "the server closed the connection before the end of the mix"
            self.hung_up = True
        if not self.done.called:
            self.done.callback(self)

    @property
    def mix_signal(self) -> np.ndarray:
        return np.frombuffer(b"".join(self.mix), "<i2")
