"""Cover images for audio (a recording's mix, an uploaded song): the waveform with a title.

Blocking (it runs ffmpeg): call it in a thread.
"""
import os
import tempfile

import ffmpeg

WIDTH, HEIGHT = 1920, 1080
BACKGROUND = "0x14213d"
WAVE = "0x8ecae6"


def make_cover(audio_path: str, out_path: str, title: str, subtitle: str = "") -> str:
    """Writes a 1920x1080 PNG: the waveform of ``audio_path`` under ``title`` and
    ``subtitle``. Without a usable font the text is left out rather than failing."""
    try:
        return _render(audio_path, out_path, title, subtitle, with_text=True)
    except ffmpeg.Error:
        return _render(audio_path, out_path, title, subtitle, with_text=False)


def _render(audio_path, out_path, title, subtitle, with_text):
    wave = ffmpeg.input(audio_path).audio.filter(
        "showwavespic", s=f"{WIDTH}x{HEIGHT // 2}", colors=WAVE, split_channels=0)
    picture = ffmpeg.input(f"color=c={BACKGROUND}:s={WIDTH}x{HEIGHT}", f="lavfi").overlay(
        wave, x=0, y=HEIGHT * 2 // 5)
    with tempfile.TemporaryDirectory() as tmp:
        if with_text:
            # textfile=: no escaping of the user's words in the filter graph
            for i, (text, size, y) in enumerate(((title, 96, 110), (subtitle, 48, 260))):
                if text:
                    path = os.path.join(tmp, f"text{i}.txt")
                    with open(path, "w", encoding="utf-8") as f:
                        f.write(text)
                    picture = picture.drawtext(textfile=path, fontcolor="white", fontsize=size,
                                               x="(w-text_w)/2", y=y)
        tmp_out = out_path + ".tmp.png"
        (ffmpeg.output(picture, tmp_out, vframes=1)
         .global_args("-hide_banner", "-loglevel", "error")
         .overwrite_output().run(capture_stdout=True, capture_stderr=True))
    os.replace(tmp_out, out_path)
    return out_path
