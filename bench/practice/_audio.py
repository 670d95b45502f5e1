"""Synthetic speech-like audio at 16 kHz, and the Whisper log-mel features Smart Turn takes.

:func:`speech` builds a clip of utterances and pauses: voiced syllables are a glottal
source (harmonics of a gliding pitch contour, 85-260 Hz) shaped by three formants that
move from syllable to syllable, with a syllable-rate amplitude envelope; some syllables
start with a fricative (band-passed noise burst). Pauses hold low background noise. It is
no language, but it has what a voice activity detector keys on: harmonic energy with
formant structure, syllabic modulation, and silences.
"""

from __future__ import annotations

import numpy as np

SR = 16000
# (F1, F2, F3) in Hz of a few vowels, from the classic Peterson-Barney averages.
VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480),
          (570, 840, 2410), (660, 1720, 2410), (440, 1020, 2240))  # fmt: skip


def _formant_gain(freqs: np.ndarray, formants: tuple[int, ...]) -> np.ndarray:
    """The magnitude of a cascade of resonances at ``formants`` (bandwidth ~ 80-120 Hz)."""
    gain = np.ones_like(freqs)
    for i, f in enumerate(formants):
        bw = 80.0 + 20.0 * i
        gain *= 1.0 / np.sqrt(1.0 + ((freqs - f) / (bw / 2)) ** 2)
    return gain


def _syllable(rng: np.random.Generator, f0: float) -> np.ndarray:
    """One voiced syllable (120-320 ms), possibly led by a fricative."""
    n = int(SR * rng.uniform(0.12, 0.32))
    t = np.arange(n) / SR
    # pitch: a glide of up to +-20 % plus a little vibrato
    contour = f0 * (1 + rng.uniform(-0.2, 0.2) * t / t[-1]) * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(contour) / SR
    a, b = (np.array(VOWELS[int(rng.integers(len(VOWELS)))], float) for _ in range(2))
    harmonics = np.arange(1, int(3800 / f0) + 1)
    mix = t / t[-1]
    # the formants glide from vowel a to vowel b: each harmonic's gain at 5 points, interpolated
    anchors = np.linspace(0, 1, 5)
    gains = np.stack([_formant_gain(harmonics * f0, tuple(a + (b - a) * m)) for m in anchors])
    g = np.stack([np.interp(mix, anchors, gains[:, j]) for j in range(len(harmonics))], axis=1)
    out = (g * np.sin(np.outer(phase, harmonics)) / np.sqrt(harmonics)).sum(axis=1)
    env = np.sin(np.pi * mix) ** 0.6
    out *= env
    if rng.random() < 0.35:  # a fricative onset: high band noise, 40-90 ms
        m = int(SR * rng.uniform(0.04, 0.09))
        spec = np.fft.rfft(rng.normal(size=m))
        f = np.fft.rfftfreq(m, 1 / SR)
        spec *= (f > rng.uniform(2500, 4500)).astype(float)
        burst = np.fft.irfft(spec, m) * np.hanning(m) * 0.6
        out = np.concatenate([burst / (np.abs(burst).max() + 1e-9) * 0.3, out])
    return out / (np.abs(out).max() + 1e-9)


def speech(rng: np.random.Generator, seconds: float, speech_fraction: float = 0.6) -> np.ndarray:
    """A clip of ``seconds`` at 16 kHz in [-1, 1]: utterances of syllables and pauses.

    Args:
        rng: the random source.
        seconds: the clip's length.
        speech_fraction: roughly how much of the clip is speech (0 gives noise only).
    """
    n = int(SR * seconds)
    out = np.zeros(n)
    pos = int(SR * rng.uniform(0.0, 0.5))
    while pos < n:
        if rng.random() < speech_fraction:
            f0 = rng.uniform(85, 260)
            level = rng.uniform(0.15, 0.6)
            for _ in range(int(rng.integers(2, 9))):
                s = _syllable(rng, f0 * rng.uniform(0.9, 1.1)) * level
                end = min(n, pos + len(s))
                out[pos:end] += s[: end - pos]
                pos = end + int(SR * rng.uniform(0.0, 0.06))
                if pos >= n:
                    break
        pos += int(SR * rng.uniform(0.2, 1.0))
    noise = rng.normal(0, rng.uniform(0.002, 0.01), n)
    hum = rng.uniform(0, 0.005) * np.sin(2 * np.pi * rng.choice([50, 60]) * np.arange(n) / SR)
    return np.clip(out + noise + hum, -1.0, 1.0).astype(np.float32)


def frames_with_context(audio: np.ndarray, frame: int = 512, context: int = 64) -> np.ndarray:
    """``audio`` cut into ``frame``-sample frames, each led by the previous frame's last
    ``context`` samples (zeros for the first), as silero-vad feeds its models:
    ``[n_frames, context + frame]``; the last partial frame is zero-padded."""
    n = -(-len(audio) // frame)
    frames = np.zeros((n, frame), np.float32)
    frames.reshape(-1)[: len(audio)] = audio
    ctx = np.zeros((n, context), np.float32)
    ctx[1:] = frames[:-1, -context:]
    return np.concatenate([ctx, frames], axis=1)


def _mel_filters(n_fft: int = 400, n_mels: int = 80) -> np.ndarray:
    """Slaney-style mel filterbank ``[n_fft // 2 + 1, n_mels]`` (Whisper's, 0-8 kHz)."""

    def to_mel(f):
        f = np.asarray(f, float)
        return np.where(
            f >= 1000, 15 + np.log(np.maximum(f, 1e-9) / 1000) * 27 / np.log(6.4), 3 * f / 200
        )

    def to_hz(m):
        m = np.asarray(m, float)
        return np.where(m >= 15, 1000 * np.exp(np.log(6.4) / 27 * (m - 15)), 200 * m / 3)

    pts = to_hz(np.linspace(to_mel(0.0), to_mel(SR / 2), n_mels + 2))
    fft = np.linspace(0, SR // 2, n_fft // 2 + 1)
    slopes = pts[None, :] - fft[:, None]
    diff = np.diff(pts)
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    filters = np.maximum(0, np.minimum(down, up))
    return filters * (2.0 / (pts[2:] - pts[:-2]))[None, :]


def whisper_log_mel(audio: np.ndarray, seconds: int = 8) -> np.ndarray:
    """Smart Turn v3's features of the last ``seconds`` of ``audio``: ``[80, 100 * seconds]``.

    The package's own steps: keep the last 8 s (pad zeros in front), normalise to zero mean
    and unit variance, centred power STFT (n_fft 400, hop 160, periodic Hann, reflect
    padding), Slaney mel (80 bins), log10 floored at 1e-10, drop the last frame, clamp at
    max - 8, then (x + 4) / 4.
    """
    n = SR * seconds
    x = np.asarray(audio, np.float64)[-n:]
    x = np.pad(x, (n - len(x), 0))
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    x = np.pad(x, (200, 200), mode="reflect")
    window = np.hanning(401)[:-1]
    frames = np.lib.stride_tricks.sliding_window_view(x, 400)[::160]
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2
    mel = np.log10(np.maximum(1e-10, power @ _mel_filters()))[:-1].T
    mel = np.maximum(mel, mel.max() - 8.0)
    return ((mel + 4.0) / 4.0).astype(np.float32)
