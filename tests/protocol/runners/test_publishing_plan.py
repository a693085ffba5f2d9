"""The sans-IO publishing plan: probes, job specs, output names, playlists."""
import attrs
from hypothesis import given
from hypothesis import strategies as st
import pytest

from choir_protocol.runners import jobs as J
from choir_protocol.runners import publishing as P
from choir_protocol.runners.jobs import JobState, JobType


def ffprobe(*streams, duration="12.5", format_name="mov,mp4"):
    return {"streams": list(streams), "format": {"duration": duration,
                                                 "format_name": format_name}}


VIDEO = {"codec_type": "video", "codec_name": "h264", "width": 1920, "height": 1080,
         "avg_frame_rate": "30000/1001"}
AUDIO = {"codec_type": "audio", "codec_name": "aac"}


def test_a_video_probe():
    p = P.probe_from_ffprobe(ffprobe(VIDEO, AUDIO))
    assert (p.width, p.height, p.fps, p.has_audio, p.duration) == (1920, 1080, 29.97, True, 12.5)
    assert p.has_video


def test_a_rotated_phone_video_is_portrait():
    v = dict(VIDEO, tags={"rotate": "90"})
    p = P.probe_from_ffprobe(ffprobe(v))
    assert (p.width, p.height) == (1080, 1920)


def test_cover_art_in_a_song_is_not_video():
    art = {"codec_type": "video", "codec_name": "mjpeg", "width": 600, "height": 600,
           "disposition": {"attached_pic": 1}}
    p = P.probe_from_ffprobe(ffprobe(AUDIO, art, format_name="mp3"))
    assert not p.has_video and p.has_audio


@pytest.mark.parametrize("info, words", [
    (ffprobe(), "no audio or video"),
    (ffprobe({"codec_type": "data"}), "no audio or video"),
    (ffprobe(VIDEO, duration="0"), "no duration"),
    (ffprobe({"codec_type": "video", "codec_name": "png", "width": 10, "height": 10}),
     "no audio or video"),
    (ffprobe(dict(VIDEO, width=0)), "no picture size"),
])
def test_what_is_not_media(info, words):
    with pytest.raises(P.NotMedia, match=words):
        P.probe_from_ffprobe(info)


def by_type(specs, type):
    return [s for s in specs if s["type"] == type]


def test_a_recording_is_an_audio_merge_then_hls_from_its_output():
    specs = P.recording_jobs("m1", "/d/mix.flac", "/d/cover.png")
    merge, *hls = specs
    assert merge["type"] == JobType.VOD_AUDIO_MERGE
    assert merge["payload"]["output"] == {"resolution": 720, "fps": 25}
    assert merge["private_payload"]["inputs"] == {"max-quality": "/d/mix.flac",
                                                  "preview": "/d/cover.png"}
    assert merge["payload"]["input"]["audioFileUrl"].endswith(
        f"/jobs/{merge['uuid']}/files/videos/m1/max-quality")
    assert [s["payload"]["output"]["resolution"] for s in hls] == [720, 480, 360]
    for s in hls:
        assert s["type"] == JobType.VOD_HLS and s["parent_uuid"] == merge["uuid"]
        assert s["private_payload"]["inputs"]["max-quality"] == {"job": merge["uuid"],
                                                                 "file": "videoFile"}
        assert s["payload"]["input"]["videoFileUrl"].endswith(
            f"/jobs/{s['uuid']}/files/videos/m1/max-quality")
    assert len({s["uuid"] for s in specs}) == len(specs)


def test_an_upload_never_goes_above_its_own_resolution():
    probe = P.Probe(10.0, 854, 480, 24.0, True)
    specs = P.upload_jobs("m", probe, "/s.mp4")
    top = specs[0]
    assert top["type"] == JobType.VOD_WEB_VIDEO and "parent_uuid" not in top
    assert top["payload"]["output"] == {"resolution": 480, "fps": 24}
    assert sorted(s["payload"]["output"]["resolution"] for s in by_type(specs, JobType.VOD_HLS)) \
        == [360, 480]
    lower_web = [s for s in by_type(specs, JobType.VOD_WEB_VIDEO) if s is not top]
    assert [s["payload"]["output"]["resolution"] for s in lower_web] == [360]
    assert all(s["parent_uuid"] == top["uuid"] for s in specs[1:])


def test_a_60fps_1080p_upload_follows_the_seed_ladder():
    specs = P.upload_jobs("m", P.Probe(5.0, 1920, 1080, 60.0, True), "/s.mp4")
    outputs = sorted((s["type"], s["payload"]["output"]["resolution"],
                      s["payload"]["output"]["fps"]) for s in specs)
    assert outputs == sorted([
        (JobType.VOD_WEB_VIDEO, 720, 60), (JobType.VOD_HLS, 720, 60),
        (JobType.VOD_HLS, 480, 30), (JobType.VOD_WEB_VIDEO, 480, 30),
        (JobType.VOD_HLS, 360, 30), (JobType.VOD_WEB_VIDEO, 360, 30)])


def test_an_audio_upload_is_published_like_a_recording():
    specs = P.upload_jobs("m", P.Probe(30.0, has_audio=True), "/song.mp3", "/cover.png")
    assert specs[0]["type"] == JobType.VOD_AUDIO_MERGE
    with pytest.raises(ValueError):
        P.upload_jobs("m", P.Probe(30.0, has_audio=True), "/song.mp3")


def test_settings_choose_the_ladder():
    settings = attrs.evolve(J.DEFAULT_SETTINGS, resolutions=frozenset({1080, 240}))
    specs = P.recording_jobs("m", "a", "c", settings)
    assert [s["payload"]["output"]["resolution"] for s in specs] == [1080, 1080, 240]


def test_output_names():
    hls = {"output": {"resolution": 480}}
    assert P.output_name(JobType.VOD_HLS, hls, "resolutionPlaylistFile", ".m3u8") \
        == "hls/480p.m3u8"
    assert P.output_name(JobType.VOD_HLS, hls, "videoFile", ".mp4") == "hls/480p-fragmented.mp4"
    assert P.output_name(JobType.VOD_AUDIO_MERGE, {"output": {"resolution": 720}},
                         "videoFile", ".mp4") == "720p.mp4"
    assert P.output_name(JobType.TRANSCRIPTION, {}, "vttFile", ".vtt") == "subtitles.vtt"


RUNNER_PLAYLIST = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:4
#EXT-X-MAP:URI="a1b2-720-fragmented.mp4",BYTERANGE="900@0"
#EXTINF:4.000000,
#EXT-X-BYTERANGE:1000@900
a1b2-720-fragmented.mp4
#EXTINF:2.000000,
#EXT-X-BYTERANGE:500@1900
a1b2-720-fragmented.mp4
#EXT-X-ENDLIST
"""


def test_the_playlist_names_the_stored_file():
    out = P.rename_segments(RUNNER_PLAYLIST, "720p-fragmented.mp4")
    assert 'URI="720p-fragmented.mp4",BYTERANGE="900@0"' in out
    assert out.count("\n720p-fragmented.mp4\n") == 2
    assert "a1b2" not in out
    assert out.splitlines()[-1] == "#EXT-X-ENDLIST"


def test_master_playlist_highest_first():
    text = P.master_playlist([P.Variant("360p.m3u8", 640, 360, 25, 400_000, "avc1.64001e"),
                              P.Variant("720p.m3u8", 1280, 720, 25, 1_500_000,
                                        "avc1.64001f,mp4a.40.2")])
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U"
    assert lines[3] == ('#EXT-X-STREAM-INF:BANDWIDTH=1500000,RESOLUTION=1280x720,'
                        'FRAME-RATE=25.000,CODECS="avc1.64001f,mp4a.40.2"')
    assert lines[4] == "720p.m3u8" and lines[6] == "360p.m3u8"
    assert lines[5].endswith(',CODECS="avc1.64001e"')


def test_master_playlist_codecs_not_probed_are_what_choir_runner_makes():
    """libx264 without -profile/-level: High at the smallest fitting level (as ffprobe shows
    of choir-runner's renditions: 360p30 3.0, 480p30 and 720p30 3.1, 1080p30 4.0, 1080p60
    4.2), and AAC-LC."""
    variants = [P.Variant(f"{h}p{fps}.m3u8", w, h, fps, 1000) for w, h, fps in (
        (640, 360, 30), (854, 480, 30), (1280, 720, 30), (1920, 1080, 30), (1920, 1080, 60))]
    lines = P.master_playlist(variants).splitlines()
    codecs = {lines[i + 1]: line.split(",CODECS=")[1] for i, line in enumerate(lines)
              if line.startswith("#EXT-X-STREAM-INF:")}
    assert codecs == {"360p30.m3u8": '"avc1.64001e,mp4a.40.2"',
                      "480p30.m3u8": '"avc1.64001f,mp4a.40.2"',
                      "720p30.m3u8": '"avc1.64001f,mp4a.40.2"',
                      "1080p30.m3u8": '"avc1.640028,mp4a.40.2"',
                      "1080p60.m3u8": '"avc1.64002a,mp4a.40.2"'}


def test_master_playlist_without_nameable_codecs_has_no_codecs_attribute():
    text = P.master_playlist([P.Variant("720p.m3u8", 1280, 720, 25, 1000, "")])
    assert "CODECS" not in text and "RESOLUTION=1280x720" in text and "BANDWIDTH=1000" in text


@pytest.mark.parametrize("video, audio, codecs", [
    (dict(VIDEO, codec_tag_string="avc1", profile="High", level=31),
     dict(AUDIO, profile="LC"), "avc1.64001f,mp4a.40.2"),
    (dict(VIDEO, profile="Main", level=40), None, "avc1.4d4028"),
    (dict(VIDEO, profile="Constrained Baseline", level=30), dict(AUDIO, profile="HE-AAC"),
     "avc1.42e01e,mp4a.40.5"),
    (None, {"codec_type": "audio", "codec_name": "mp3"}, "mp4a.40.34"),
    (dict(VIDEO, codec_name="hevc", profile="Main", level=93), AUDIO, ""),  # not nameable
    (dict(VIDEO, profile="High"), AUDIO, ""),  # no level
])
def test_codecs_from_ffprobe(video, audio, codecs):
    p = P.probe_from_ffprobe(ffprobe(*[s for s in (video, audio) if s is not None]))
    assert p.codecs == codecs


def job(state):
    return J.Job(uuid="u", type=JobType.VOD_HLS, state=state, payload={}, created_at=0,
                 updated_at=0)


@given(st.lists(st.sampled_from(list(JobState)), min_size=1, max_size=8))
def test_media_state(states):
    state = P.media_state([job(s) for s in states])
    if any(s not in J.FINAL_STATES for s in states):
        assert state == "processing"
    elif all(s is JobState.COMPLETED for s in states):
        assert state == "completed"
    elif JobState.COMPLETED in states:
        assert state == "partial"
    else:
        assert state == "failed"


def test_no_jobs():
    assert P.media_state([]) == "none"


def test_a_plan_is_reproducible_with_its_own_uuids():
    def counter():
        n = iter(range(100))
        return lambda: f"job-{next(n)}"
    a = P.upload_jobs("m", P.Probe(5.0, 1280, 720, 30.0, True), "/s.mp4", make_uuid=counter())
    b = P.upload_jobs("m", P.Probe(5.0, 1280, 720, 30.0, True), "/s.mp4", make_uuid=counter())
    assert a == b and a[0]["uuid"] == "job-0"
    assert all(s["parent_uuid"] == "job-0" for s in a[1:])
