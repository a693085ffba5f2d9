"""Every fuzz target, for tests/test_fuzz_*.py and bench/fuzz.py (``make fuzz``)."""
from .http_cases import http_target
from .rehearsal import rehearsal_target
from .socketio_cases import ws_target
from .wire import TARGETS as WIRE_TARGETS


def all_targets(gc_every=1) -> list:
    """``gc_every``: cases between garbage collections in the daemon's targets (a Deferred
    that dies holding an error is logged only when collected; a collection costs tens of
    ms, so a long run collects less often and counts such an error against a later case)."""
    return [*WIRE_TARGETS, rehearsal_target(gc_every), http_target(gc_every),
            ws_target(gc_every)]
