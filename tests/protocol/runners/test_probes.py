"""One reading of ffprobe for the runner and the publisher (``choir_protocol.runners.probes``):
they agree on a rotated video's displayed size, whichever way ffprobe tells the rotation."""
import json
import subprocess

import pytest

from choir_clients.runner import ffmpeg_commands as F
from choir_protocol.runners import probes
from choir_protocol.runners.publishing import probe_from_ffprobe

PHONE = {"codec_type": "video", "codec_name": "h264", "width": 1920, "height": 1080,
         "avg_frame_rate": "30/1"}
AUDIO = {"codec_type": "audio", "codec_name": "aac"}


def ffprobe(video):
    return {"format": {"duration": "3", "format_name": "mov,mp4"}, "streams": [video, AUDIO]}


@pytest.mark.parametrize("rotated, portrait", [
    ({"side_data_list": [{"side_data_type": "Display Matrix", "rotation": -90}]}, True),
    ({"side_data_list": [{"rotation": 90}]}, True),  # ffmpeg 5's sign
    ({"tags": {"rotate": "270"}}, True),  # before ffmpeg 5: the tag alone
    ({"tags": {"rotate": "90"}, "side_data_list": [{"rotation": 180}]}, False),  # the matrix wins
    ({"side_data_list": [{"rotation": -180}]}, False),
    ({"tags": {"rotate": "90.0"}}, True),
    ({"tags": {"rotate": "sideways"}}, False),  # nonsense: not turned
    ({}, False),
])
def test_the_runner_and_the_publisher_agree_on_rotation(rotated, portrait):
    info = ffprobe({**PHONE, **rotated})
    expected = (1080, 1920) if portrait else (1920, 1080)
    runner = F.media_info(info)
    publisher = probe_from_ffprobe(info)
    assert (runner.width, runner.height) == expected
    assert (publisher.width, publisher.height) == expected


def test_a_rotated_file_as_ffprobe_reads_it(tmp_path):
    plain, turned = tmp_path / "plain.mp4", tmp_path / "turned.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                    "testsrc=size=320x240:rate=25:duration=1", "-c:v", "libx264", str(plain)],
                   check=True)
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(plain), "-c", "copy",
                    "-metadata:s:v:0", "rotate=90", str(turned)], check=True)
    info = json.loads(subprocess.run(["ffprobe", *F.probe_args(str(turned))],
                                     capture_output=True, check=True).stdout)
    assert probes.rotation(probes.picture_stream(info)) in (90, 270)
    assert (F.media_info(info).width, F.media_info(info).height) == (240, 320)
    assert (probe_from_ffprobe(info).width, probe_from_ffprobe(info).height) == (240, 320)
