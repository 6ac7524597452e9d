"""What a :class:`~arraymel.MelConfig` means for the GPU kernels, computed once on the host.

Pure NumPy: the window taps, the magnitude mode, the host plan's band table of the mel filterbank
(:mod:`arraymel.core.plan`) and the launch shape of the mel kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from arraymel._config import MelConfig
from arraymel._cupy.kernels import BLOCK, KEY_DTYPES, SMEM_LIMIT
from arraymel.core.plan import BandTable, host_plan

#: Periodic windows as ``a - (1 - a) cos(2 pi n / N)``: after the FFT they are the three taps
#: ``Y[k] = a X[k] + b (X[k-1] + X[k+1])`` with ``b = -(1 - a) / 2``.
WINDOW_TAPS: dict[str, tuple[float, float]] = {"hann": (0.5, -0.25), "hamming": (0.54, -0.23)}

#: Frames per block of the mel kernel are a power of two up to this.
MAX_FRAMES_PER_BLOCK = 32


@dataclass(frozen=True)
class MelParams:
    """Everything the kernels need from a config, for one compute dtype."""

    dtype_name: str
    n_fft: int
    hop: int
    pad: int
    nb: int
    n_mels: int
    #: The window can be applied after the FFT (periodic Hann/Hamming spanning the whole frame,
    #: or no window): frames may then be read in place by an overlapped cuFFT plan.
    inplace_ok: bool
    #: 1 when the window is applied as three taps in frequency (Hann/Hamming), else 0.
    taps: int
    tap_a: float
    tap_b: float
    #: The padded window of the gather path (None: no window), float64 host array.
    window: np.ndarray | None
    #: 0: ``re^2 + im^2``; 1: its square root; 2: its power ``half_exp``.
    pmode: int
    half_exp: float
    table: BandTable
    db: int
    min_power: float
    ref_db: float
    top_db: float | None
    per_example: bool
    #: Signal samples one frame needs (``fft_length``; without centring ``sequence_length``).
    frame_span: int = 0
    #: 1: samples outside the signal are 0 (``pad_mode="constant"``), 0: its reflection.
    zero_pad: int = 0
    #: 1: Kaldi's per-frame mean removal and pre-emphasis (``preemph``) over ``win_len`` samples, in the gather kernel.
    frame_step: int = 0
    win_len: int = 0
    preemph: float = 0.0

    def frames(self, samples: int) -> int:
        """The frame count of a signal of ``samples`` samples (:meth:`arraymel.MelConfig.n_frames`)."""
        return 1 + (samples + 2 * self.pad - self.frame_span) // self.hop

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype_name).itemsize

    @property
    def key_dtype(self) -> np.dtype:
        return np.dtype(KEY_DTYPES[self.dtype_name])

    @property
    def needs_max(self) -> bool:
        return bool(self.db) and self.top_db is not None

    @property
    def has_ref(self) -> int:
        return int(self.ref_db != 0.0)


def mel_params(cfg: MelConfig, dtype_name: str) -> MelParams:
    """The :class:`MelParams` of ``cfg`` computed in ``dtype_name``, from its host plan
    (:func:`arraymel.core.plan.host_plan`, which builds the filterbank once: it may warn)."""
    plan = host_plan(cfg, dtype_name)
    named = isinstance(cfg.window, str)
    # (window=None without centring is ones over sequence_length only: the gather path's window)
    inplace_ok = cfg.frame_step is None and ((cfg.window is None and cfg.center) or
                                             (named and cfg.sequence_length == cfg.fft_length))
    # a named window of length 1 is [1.0] (scipy's and so Keras's special case): no taps then
    taps = int(named and inplace_ok and cfg.fft_length >= 2)
    a, b = WINDOW_TAPS[cfg.window] if taps else (1.0, 0.0)
    window = plan.window
    if cfg.mag_exp == 2.0:
        pmode, half = 0, 1.0
    elif cfg.mag_exp == 1.0:
        pmode, half = 1, 0.5
    else:
        pmode, half = 2, cfg.mag_exp / 2.0
    return MelParams(
        dtype_name=dtype_name, n_fft=plan.fft_length, hop=plan.hop, pad=plan.pad, nb=plan.n_bins,
        n_mels=cfg.num_mel_bins, inplace_ok=inplace_ok, taps=taps, tap_a=a, tap_b=b, window=window,
        pmode=pmode, half_exp=half, table=plan.band_table, db=int(cfg.power_to_db), min_power=cfg.min_power,
        ref_db=plan.ref_db if cfg.power_to_db else 0.0,
        top_db=cfg.top_db if cfg.power_to_db else None, per_example=cfg.top_db_scope == "example",
        frame_span=plan.frame_span, zero_pad=int(cfg.pad_mode == "constant"), frame_step=int(cfg.frame_step == "kaldi"),
        win_len=cfg.sequence_length, preemph=plan.preemphasis,
    )


@dataclass(frozen=True)
class MelLaunch:
    """Launch shape of the mel kernel for chunks of ``frames`` frames per row.

    ``kernel`` is ``"am_mel_smem"`` (``fpb`` frames per block, their power rows ``stride_s``
    elements apart in ``smem`` bytes of shared memory) or ``"am_mel_direct"`` when one frame's
    power row does not fit.
    """

    kernel: str
    fpb: int
    stride_s: int
    smem: int

    def tiles(self, frames: int, n_mels: int) -> int:
        """Blocks per chunk row."""
        if self.kernel == "am_mel_smem":
            return -(-frames // self.fpb)
        return -(-(n_mels * frames) // BLOCK)


def mel_launch(nbu: int, itemsize: int, frames: int, rows: int = 1, min_blocks: int = 0,
               smem_limit: int = SMEM_LIMIT) -> MelLaunch:
    """The largest power-of-two frames per block (at most 32, at most what ``frames`` needs) whose power
    rows fit ``smem_limit`` bytes; the row stride is odd so that a warp's frames fall in different banks.

    A small chunk (``rows`` x ``frames``) gets fewer frames per block, down to 1, until it makes at
    least ``min_blocks`` blocks (two per multiprocessor fill the GPU): a single clip's latency then
    does not wait on a few busy multiprocessors.
    """
    stride = nbu + 1 if nbu % 2 == 0 else nbu
    want = 1 << max(0, math.ceil(math.log2(max(1, frames))))
    fpb = min(MAX_FRAMES_PER_BLOCK, want)
    while fpb > 1 and rows * -(-frames // fpb) < min_blocks:
        fpb //= 2
    while fpb >= 1:
        smem = fpb * stride * itemsize
        if smem <= smem_limit:
            return MelLaunch("am_mel_smem", fpb, stride, smem)
        fpb //= 2
    return MelLaunch("am_mel_direct", 1, stride, 0)
