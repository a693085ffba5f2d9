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
    # sqrt: a choir's quiet passages still show, its loud ones do not fill the frame
    wave = ffmpeg.input(audio_path).audio.filter(
        "showwavespic", s=f"{WIDTH}x{HEIGHT // 2}", colors=WAVE, split_channels=0,
        scale="sqrt", draw="full")
    picture = ffmpeg.input(f"color=c={BACKGROUND}:s={WIDTH}x{HEIGHT}", f="lavfi").overlay(
        wave, x=0, y=HEIGHT * 2 // 5)
    with tempfile.TemporaryDirectory() as tmp:
        if with_text:
            # textfile=: no escaping of the user's words in the filter graph
            title_size = _fitting(title, 96)
            subtitle_size = min(_fitting(subtitle, 48), max(24, title_size * 3 // 5))
            for i, (text, size, y) in enumerate(((title, title_size, 110),
                                                  (subtitle, subtitle_size, 260))):
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


def fit_cover(cover_path: str, out_path: str, resolution: int) -> str:
    """Writes ``cover_path`` scaled so that its smaller side is ``resolution`` (even sides,
    the aspect kept): an audio merge's picture at its job's resolution. PeerTube's runner
    does not scale the preview (it only makes its sides even), so a 1920x1080 cover would
    make a "720p" MP4 of 1920x1080, at twice the work."""
    landscape = "gte(iw,ih)"
    tmp_out = out_path + ".tmp.png"
    (ffmpeg.input(cover_path).video
     .filter("scale", f"if({landscape},-2,{resolution})", f"if({landscape},{resolution},-2)")
     .output(tmp_out, vframes=1)
     .global_args("-hide_banner", "-loglevel", "error")
     .overwrite_output().run(capture_stdout=True, capture_stderr=True))
    os.replace(tmp_out, out_path)
    return out_path


def _fitting(text: str, largest: int) -> int:
    """A font size at which ``text`` fits the width (a glyph is about 0.6 em wide)."""
    return max(24, min(largest, int(WIDTH * 0.92 / (0.6 * max(len(text), 1)))))
