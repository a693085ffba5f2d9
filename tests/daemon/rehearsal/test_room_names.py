"""A client naming a room (header version 4) at a daemon of one open room, `default`."""
from choir_protocol.rehearsal import desk as desk_messages
from choir_protocol.rehearsal.chunks import ChunkReader, refusal_reason
from choir_protocol.rehearsal.connections import initiate
from choir_protocol.rehearsal.constants import MIX_CHUNK_SIZE, TRACK_CHUNK_SIZE, Signal
from choir_protocol.rehearsal.header import Header
from choir_protocol.rehearsal.room_header import RoomAccess

from ...support.daemon_helpers import service_daemon, voice_signal

OUR_SINGER = Header("Bob", "Bass", "choir-singer 0.1.0")
OUR_DIRECTOR = Header(client_version="choir-director 0.1.0")


def test_the_default_room_named_is_the_room():
    daemon = service_daemon()
    peer = daemon.raw_peer("singers")
    peer.send(initiate(OUR_SINGER, RoomAccess("default", "any-key")))
    daemon.advance(0.05)
    assert not peer.closed and len(daemon.room.singers) == 1


def test_another_room_is_refused_saying_so_and_disturbs_nothing():
    daemon = service_daemon()
    ann = daemon.singer("Ann", voice=voice_signal(40, seed=1))
    director = daemon.director()
    director.stream(20)  # a session is running
    daemon.advance(0.2)
    singer = daemon.raw_peer("singers")
    singer.send(initiate(OUR_SINGER, RoomAccess("altos", "k")))
    other_director = daemon.raw_peer("director")
    other_director.send(initiate(OUR_DIRECTOR, RoomAccess("altos", "k")))
    daemon.advance(0.05)
    for peer, size in ((singer, TRACK_CHUNK_SIZE), (other_director, MIX_CHUNK_SIZE)):
        sent = ChunkReader(size).feed(peer.take_output())  # in the size its client reads
        assert [i for i, _ in sent] == [Signal.REFUSED]
        assert refusal_reason(sent[0][1]) == "there is no room 'altos' here"
        assert peer.closed
    assert list(daemon.room.singers) == [ann.protocol]
    director.stream(20)
    director.end()
    daemon.run_until(lambda: daemon.room.session is None)
    assert daemon.room.last_session.ended == "complete" and len(director.mix) == 40


def test_a_garbled_room_block_closes_the_connection():
    daemon = service_daemon()
    peer = daemon.raw_peer("singers")
    peer.send(initiate(OUR_SINGER, RoomAccess("altos"))[:512] + bytes(256))
    daemon.advance(0.05)
    assert peer.closed and not daemon.room.singers


def test_the_desk_reads_the_room_block_and_refuses_another_room_in_its_own_words():
    daemon = service_daemon()
    here = daemon.raw_peer("desk", host="127.0.0.1")
    here.send(initiate(OUR_DIRECTOR, RoomAccess("default", "k"))
              + desk_messages.encode_message({"action": "list"}))
    elsewhere = daemon.raw_peer("desk", host="127.0.0.1")
    elsewhere.send(initiate(OUR_DIRECTOR, RoomAccess("altos", "k")))
    daemon.advance(0.05)
    listed = desk_messages.MessageReader().feed(here.take_output())
    assert listed == [[]] and not here.closed  # answered (no session: nobody to list)
    told = desk_messages.MessageReader().feed(elsewhere.take_output())
    assert told == [{"error": "there is no room 'altos' here"}] and elsewhere.closed
