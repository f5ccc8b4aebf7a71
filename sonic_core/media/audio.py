"""Audio decode (PyAV), resampling and the checks speech input must pass.

Only the containers we accept are decoded, each by its own demuxer (the format is sniffed from the bytes, never left
to FFmpeg's probing of every format it knows), and the decoder's memory is bounded before and while decoding: sample
rate, channels, and seconds x rate x channels (sonicflow_contract.audio_over_limits).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from scipy.signal import resample_poly

from sonicflow_contract import MAX_AUDIO_SECONDS, MEDIA_EXT, audio_over_limits, media_format

from ..errors import InputError
from .sniff import describe_file

# Below this peak level (about -60 dBFS) a track has nothing a face could follow.
SILENCE_PEAK = 1e-3
# Speech files, and the sound track of a video (Load Audio offers both).
FORMATS = {**MEDIA_EXT["audio"], **MEDIA_EXT["video"]}


@dataclass(frozen=True)
class Audio:
    """Decoded audio: float32 samples (channels, n) in [-1, 1]."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration(self) -> float:
        return self.samples.shape[1] / float(self.sample_rate)

    @property
    def channels(self) -> int:
        return self.samples.shape[0]

    def mono(self) -> np.ndarray:
        return self.samples.mean(axis=0, dtype=np.float32)

    def mono_at(self, rate: int) -> np.ndarray:
        """Mono mix-down resampled to `rate` (polyphase, as good as librosa's default for speech)."""
        return resample(self.mono(), self.sample_rate, rate)

    def trimmed(self, seconds: float) -> "Audio":
        n = int(round(seconds * self.sample_rate))
        return Audio(np.ascontiguousarray(self.samples[:, :n]), self.sample_rate)

    def fitted(self, seconds: float) -> "Audio":
        """Trimmed, or padded with silence, to last exactly `seconds` (the video's length)."""
        n = int(round(seconds * self.sample_rate))
        s = self.samples[:, :n]
        if s.shape[1] < n:
            s = np.pad(s, ((0, 0), (0, n - s.shape[1])))
        return Audio(np.ascontiguousarray(s), self.sample_rate)


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out:
        return x.astype(np.float32, copy=False)
    g = np.gcd(int(rate_in), int(rate_out))
    return resample_poly(x, rate_out // g, rate_in // g, axis=-1).astype(np.float32)


def _too_large(input_name: str, why: str) -> InputError:
    return InputError(input_name, f"audio of {why} is more than a decoder should hold",
                      "re-export the speech as mono or stereo at 16-48 kHz", code="audio_too_large")


def load_audio(path: str, input_name: str = "audio") -> Audio:
    """Decode the first audio stream of a wav, mp3, flac, ogg or m4a file, or of an mp4/mov/webm video."""
    import av  # here, not at the top: the Sonic engine's model side (and its GPU benchmarks) imports Audio, not PyAV

    if not os.path.isfile(path):
        raise InputError(input_name, f"file not found: {path}", "pick an existing file from the input folder")
    fix = "use a speech recording in wav, mp3, flac, ogg or m4a, or a video with a sound track"
    with open(path, "rb") as f:
        fmt = media_format(f.read(64))
    if fmt not in FORMATS:
        raise InputError(input_name, f"'{os.path.basename(path)}' is not wav, mp3, flac, ogg, m4a or an mp4/webm "
                         f"video ({describe_file(path)})", fix, code="audio_unreadable")
    try:
        container = av.open(path, format=fmt)
    except (av.FFmpegError, UnicodeDecodeError) as e:
        raise InputError(input_name, f"'{os.path.basename(path)}' is not readable media ({describe_file(path)}; {e})",
                         fix, code="audio_unreadable") from e
    with container:
        if not container.streams.audio:
            raise InputError(input_name, f"'{os.path.basename(path)}' has no audio track ({describe_file(path)})",
                             fix, code="audio_unreadable")
        stream = container.streams.audio[0]
        declared = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
        why = audio_over_limits(stream.rate or 0, stream.channels or 0, declared)  # the header, before decoding
        if why:
            raise _too_large(input_name, why)
        # Decode to planar float32 at the stream's own rate and layout (mono/stereo kept, others mixed to stereo).
        layout = "mono" if stream.channels == 1 else "stereo"
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=stream.rate)
        chunks, seconds = [], 0.0
        try:
            for frame in container.decode(stream):
                seconds += frame.samples / float(frame.sample_rate or stream.rate)
                if seconds > MAX_AUDIO_SECONDS:
                    raise InputError(input_name, f"audio is longer than {MAX_AUDIO_SECONDS / 60:.0f} minutes",
                                     "split it into shorter clips", code="audio_too_long")
                why = audio_over_limits(frame.sample_rate, frame.layout.nb_channels, seconds)  # headers can lie
                if why:
                    raise _too_large(input_name, why)
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
        except av.FFmpegError as e:
            raise InputError(input_name, f"'{os.path.basename(path)}' is corrupt: decoding failed ({e})", fix,
                             code="audio_unreadable") from e
        rate = resampler.rate
    if not chunks:
        raise InputError(input_name, f"'{os.path.basename(path)}' holds no audio samples (zero length)",
                         "use a recording that is at least a fraction of a second long", code="audio_empty")
    samples = np.concatenate(chunks, axis=1).astype(np.float32, copy=False)
    return Audio(np.ascontiguousarray(samples), int(rate))


def check_speech(audio: Audio, input_name: str = "audio") -> None:
    """Reject audio a talking head cannot follow: empty or silent."""
    if audio.samples.size == 0 or audio.duration <= 0:
        raise InputError(input_name, "audio has zero length",
                         "use a recording that is at least a fraction of a second long", code="audio_empty")
    peak = float(np.max(np.abs(audio.samples)))
    if not np.isfinite(peak):
        raise InputError(input_name, "audio holds invalid samples (NaN or infinity)", "re-export the recording",
                         code="audio_unreadable")
    if peak < SILENCE_PEAK:
        db = 20 * np.log10(peak) if peak > 0 else float("-inf")
        raise InputError(input_name, f"audio is silent (peak {db:.0f} dBFS): there is no speech to animate",
                         "connect a speech recording, or raise its volume", code="audio_silent")
