"""A rehearsal's singers for the session tests: eight simulated singers over loopback TCP."""
from twisted.internet import endpoints, reactor

from .simulated import SimulatedSinger

# (network delay s, jitter s, device latency in chunks) of the eight singers
EIGHT_SINGERS = [(0.0, 0.0, 2), (0.02, 0.01, 3), (0.05, 0.03, 5), (0.1, 0.05, 4),
                 (0.2, 0.08, 8), (0.3, 0.1, 6), (0.4, 0.1, 12), (0.5, 0.15, 10)]


async def connect_singers(test, daemon, specs, **options):
    """Connect simulated singers; the test waits for them to be disconnected at the end."""
    singers = []
    for i, (delay, jitter, latency) in enumerate(specs):
        singer = SimulatedSinger(reactor, f"singer{i}", "Soprano", delay=delay, jitter=jitter,
                                 device_latency=latency, seed=i, **options)
        await endpoints.connectProtocol(daemon.endpoint("singers"), singer)
        test.addCleanup(lambda s=singer: s.disconnected)
        test.addCleanup(lambda s=singer: s.transport.loseConnection())
        singers.append(singer)
    return singers
