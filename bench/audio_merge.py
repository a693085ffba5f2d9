"""Audio merge (cover image + audio -> MP4), the naive way against choir-runner's.

    .venv/bin/python bench/audio_merge.py [--seconds 60] [--resolution 720] [--runs 1]

Inputs are generated with ffmpeg's lavfi sources: SECONDS of a stereo 48 kHz chord (three
sines) as FLAC and a 1920x1080 PNG cover. (Not one pure sine: ffmpeg's AAC encoder at
192 kb/s spends 3 s on 60 s of a lone sine and 0.6 s at 128 kb/s, which would measure the
audio encoder's pathology rather than the video graph; ``--audio sine`` shows it.) Naive: ``-loop 1`` on the image input (every output frame decodes and
scales the PNG again), preset medium. Ours: runner_ffmpeg.audio_merge_args (the cover
decoded and scaled once, repeated by the ``loop`` filter, -tune stillimage, veryfast; the
AAC audio encoded by a second ffmpeg at the same time; then both muxed, copied).
Prints a table of wall-clock seconds and the speed-up.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from choir_clients.runner import ffmpeg_commands as F  # noqa: E402


def probe(path):
    out = subprocess.run(["ffprobe", *F.probe_args(path)], capture_output=True, check=True)
    return F.parse_probe(out.stdout)


def timed(commands) -> float:
    """Runs the commands of each step at the same time, the steps one after the other."""
    start = time.monotonic()
    for step in commands:
        running = [subprocess.Popen(args, stdout=subprocess.DEVNULL) for args in step]
        if any(p.wait() for p in running):
            raise SystemExit(f"ffmpeg failed: {step}")
    return time.monotonic() - start


def ours(audio, cover, out, image, sound, resolution, fps):
    merge = F.audio_merge_args(audio, cover, out, image, sound, resolution, fps)
    return [[merge.video, merge.audio], [merge.mux]]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--resolution", type=int, default=720)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--audio", choices=("chord", "sine"), default="chord")
    parser.add_argument("--runs", type=int, default=1, help="best of N")
    a = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        audio, cover = os.path.join(tmp, "audio.flac"), os.path.join(tmp, "cover.png")
        sines = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
        if a.audio == "chord":
            sines = [arg for f in (220, 277, 330) for arg in
                     ("-f", "lavfi", "-i", f"sine=frequency={f}:sample_rate=48000")]
            sines += ["-filter_complex", "amix=inputs=3", "-ac", "2"]
        subprocess.run(["ffmpeg", "-v", "error", *sines, "-t", str(a.seconds), audio],
                       check=True)
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=1920x1080",
                        "-frames:v", "1", cover], check=True)
        image, sound = probe(cover), probe(audio)
        width, height = F.scaled_size(image.width, image.height, a.resolution)
        out = os.path.join(tmp, "out.mp4")
        rows = []
        for name, args in (
                ("naive (-loop 1, preset medium)",
                 [[F.naive_audio_merge_args(audio, cover, out, width, height, a.fps)]]),
                ("choir-runner (loop filter, stillimage, veryfast, audio apart)",
                 ours(audio, cover, out, image, sound, a.resolution, a.fps))):
            seconds = min(timed(args) for _ in range(a.runs))
            result = probe(out)
            rows.append((name, seconds, result))
    print(f"{a.seconds:g} s {a.audio} audio + 1920x1080 cover -> {width}x{height} @ {a.fps} fps, "
          f"{os.cpu_count()} CPUs, best of {a.runs}")
    print(f"{'method':<62} {'seconds':>8} {'output':>16}")
    for name, seconds, result in rows:
        print(f"{name:<62} {seconds:>8.1f} {f'{result.width}x{result.height} {result.duration:.2f}s':>16}")
    print(f"speed-up: {rows[0][1] / rows[1][1]:.1f}x")


if __name__ == "__main__":
    main()
