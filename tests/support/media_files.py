"""Media files made by ffmpeg for the tests (from its lavfi sources: nothing to download)."""
import subprocess


def ffmpeg(*args):
    """ffmpeg with ``args``, quiet but for errors, overwriting its output; fails the test if
    ffmpeg fails."""
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True,
                   timeout=120)


def make_video(path, seconds=2, size="640x360", rate=25, source="testsrc"):
    """An H.264 + AAC MP4 (a test picture, a 440 Hz sine) at ``path``; -> ``path``."""
    ffmpeg("-f", "lavfi", "-i", f"{source}=size={size}:rate={rate}", "-f", "lavfi", "-i",
           "sine=frequency=440:sample_rate=48000", "-t", str(seconds), "-c:v", "libx264",
           "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", path)
    return path
