"""The CODECS attribute of an HLS variant (RFC 8216 4.3.4.2): RFC 6381 codec strings.

From ffprobe's streams, as PeerTube writes its master playlist (``getVideoStreamCodec``,
``getAudioStreamCodec``): H.264 is ``avc1.PPCCLL`` (profile_idc, constraint flags, level_idc
in hex), AAC-LC ``mp4a.40.2``. A player picks a variant it can decode by this string, and
Safari and hls.js create their decoders from it, so it must say what the file holds: when the
streams are not known, ``runner_guess`` says what choir-runner's ffmpeg makes (libx264 with
no ``-profile``/``-level``: High profile, the smallest level that fits, and AAC-LC).
"""

# profile name as ffprobe gives it -> profile_idc and constraint-flags byte, in hex
AVC_PROFILES = {
    "Constrained Baseline": "42e0",  # what libx264 -profile baseline makes
    "Baseline": "4200",
    "Main": "4d40",
    "Extended": "5800",
    "High": "6400",
    "High 10": "6e00",
    "High 4:2:2": "7a00",
    "High 4:4:4 Predictive": "f400",
}
AAC_OBJECT_TYPES = {"LC": 2, "HE-AAC": 5, "HE-AACv2": 29, "LD": 23, "Main": 1}

# H.264 Table A-1: (level_idc, max macroblocks per second, max frame size in macroblocks)
AVC_LEVELS = [(10, 1485, 99), (11, 3000, 396), (12, 6000, 396), (13, 11880, 396),
              (20, 11880, 396), (21, 19800, 792), (22, 20250, 1620), (30, 40500, 1620),
              (31, 108000, 3600), (32, 216000, 5120), (40, 245760, 8192), (41, 245760, 8192),
              (42, 522240, 8704), (50, 589824, 22080), (51, 983040, 36864),
              (52, 2073600, 36864), (60, 4177920, 139264), (61, 8355840, 139264),
              (62, 16711680, 139264)]


def video_codec(stream: dict) -> str | None:
    """An ffprobe video stream -> ``avc1.640028``; None for what cannot be named."""
    if stream.get("codec_name") != "h264":
        return None
    profile = AVC_PROFILES.get(stream.get("profile") or "")
    level = stream.get("level")
    if profile is None or not isinstance(level, int) or not 0 < level < 256:
        return None
    tag = stream.get("codec_tag_string")
    return f"{tag if tag in ('avc1', 'avc3') else 'avc1'}.{profile}{level:02x}"


def audio_codec(stream: dict) -> str | None:
    """An ffprobe audio stream -> ``mp4a.40.2``; None for what cannot be named."""
    name = stream.get("codec_name")
    if name == "aac":
        object_type = AAC_OBJECT_TYPES.get(stream.get("profile") or "LC")
        return None if object_type is None else f"mp4a.40.{object_type}"
    return {"mp3": "mp4a.40.34", "opus": "opus", "flac": "fLaC", "ac3": "ac-3",
            "eac3": "ec-3"}.get(name)


def stream_codecs(video: dict | None, audio: dict | None) -> str:
    """The CODECS value for a file with these streams (either may be None); "" if a stream
    it has cannot be named (better no CODECS than a wrong one)."""
    parts = []
    for stream, name in ((video, video_codec), (audio, audio_codec)):
        if stream is not None:
            codec = name(stream)
            if codec is None:
                return ""
            parts.append(codec)
    return ",".join(parts)


def avc_level(width: int, height: int, fps: float) -> int:
    """The smallest H.264 level whose frame size and macroblock rate fit (libx264's own
    choice when given no -level, for the few reference frames of its fast presets)."""
    frame = -(-width // 16) * -(-height // 16)
    for level, max_rate, max_frame in AVC_LEVELS:
        if frame <= max_frame and frame * fps <= max_rate:
            return level
    return AVC_LEVELS[-1][0]


def runner_guess(width: int, height: int, fps: float) -> str:
    """What choir-runner's HLS renditions hold: H.264 High at the fitting level, AAC-LC."""
    return f"avc1.{AVC_PROFILES['High']}{avc_level(width, height, fps):02x},mp4a.40.2"
