"""Room.on_session_recorded: the publisher hears of a finished recording without a scan."""
import os
import shutil
import tempfile

from choir_twisted.rehearsal.summary_file import read_summary

from ...support.daemon_helpers import MemoryDaemon


def _one_session(daemon):
    singer = daemon.singer("ann")
    director = daemon.director()
    daemon.advance(0.1)
    director.stream(50)
    director.end()
    daemon.run_until(lambda: daemon.room.last_session is not None)
    return singer, director


def test_the_hook_is_called_once_with_the_directory_when_the_tracks_are_final():
    data_dir = tempfile.mkdtemp()
    try:
        daemon = MemoryDaemon(data_dir=data_dir)
        recorded = []
        daemon.room.on_session_recorded = lambda directory: recorded.append(
            (directory, read_summary(directory)))
        _one_session(daemon)
        session = daemon.room.last_session
        assert session.ended == "complete"
        assert session.recorder.wait(10)
        daemon.advance(daemon.tick)
        ((directory, summary),) = recorded
        assert directory == os.path.join(data_dir, "sessions", session.id)
        assert (summary.state, summary.tracks) == ("complete", "ready")
        assert summary.files == ("mix.flac", "singer-001-ann-Alto.flac")
        daemon.advance(1.0)
        assert len(recorded) == 1
        daemon.room.stop()
    finally:
        shutil.rmtree(data_dir)


def test_without_a_hook_or_a_data_dir_nothing_is_called():
    daemon = MemoryDaemon()
    _, director = _one_session(daemon)
    assert daemon.room.last_session.recorder is None
    daemon.room.on_session_recorded = lambda directory: 1 / 0
    daemon.advance(1.0)
    daemon.room.stop()
