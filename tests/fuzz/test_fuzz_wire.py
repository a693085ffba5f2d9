"""Fuzzing the sans-IO parsers (tests/fuzz/wire.py): events or ProtocolError, nothing else.
``make fuzz`` runs the same targets on 100 000 cases each."""
from hypothesis import strategies as st
import pytest

from choir_protocol.errors import ProtocolError

from .harness import check, pure
from .wire import TARGETS


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_only_protocol_errors(target):
    check(target, max_examples=300)


def test_anything_but_a_protocol_error_fails_the_check():
    def parser(data):
        if data.startswith(b"\x01"):
            raise ProtocolError("allowed")
        if len(data) > 3:
            raise KeyError("a bug")

    with pytest.raises(AssertionError, match="KeyError"):
        check(pure("planted", st.binary(), parser), max_examples=100)
