"""The whole mel spectrogram pipeline, generic over Array API namespaces (the reference path).

Frames are processed in blocks so that the work area stays under a memory budget whatever the
input length; only the mel output (num_mel_bins / (fft_length / 2) of the spectrum) is kept.
"""

from __future__ import annotations

import math
from typing import Any

from arraymel._config import MelConfig
from arraymel.core._xp import from_host
from arraymel.core.db import clip_top_db, db_unclipped
from arraymel.core.plan import host_plan
from arraymel.core.stft import stft_block

#: Default work-area budget of the generic path, bytes.
DEFAULT_MAX_MEMORY = 256 * 2**20


def magnitude_power(spec: Any, xp: Any, mag_exp: float) -> Any:
    """``|X| ** mag_exp``; for ``mag_exp == 2`` ``re*re + im*im`` without a square root."""
    re, im = xp.real(spec), xp.imag(spec)
    p = re * re + im * im
    if mag_exp == 2.0:
        return p
    if mag_exp == 1.0:
        return xp.sqrt(p)
    return p ** (mag_exp / 2.0)


def frames_per_block(cfg: MelConfig, batch: int, itemsize: int, max_memory: int | None) -> int:
    """Frames per block so that the block's frames and spectra fit in ``max_memory`` bytes."""
    budget = DEFAULT_MAX_MEMORY if max_memory is None else int(max_memory)
    # frames (fft) + windowed frames (fft) + complex spectrum (2 * bins) + power (bins), per frame
    per_frame = max(1, batch) * itemsize * (2 * cfg.fft_length + 3 * cfg.n_bins + cfg.num_mel_bins)
    return max(1, budget // per_frame)


def mel_power(x2: Any, xp: Any, cfg: MelConfig, *, window: Any, filterbank: Any, max_memory: int | None = None) -> Any:
    """Mel power ``(batch, frames, num_mel_bins)`` of a 2-D signal batch, block by block."""
    n_frames = cfg.n_frames(x2.shape[-1])
    block = frames_per_block(cfg, x2.shape[0], 8 if x2.dtype == xp.float64 else 4, max_memory)
    parts = []
    for t0 in range(0, n_frames, block):
        t1 = min(n_frames, t0 + block)
        spec = stft_block(x2, xp, cfg, window, t0, t1)
        parts.append(magnitude_power(spec, xp, cfg.mag_exp) @ filterbank)
    return parts[0] if len(parts) == 1 else xp.concat(parts, axis=1)


class GenericState:
    """Constants of the generic path for one (config, namespace, device, dtype)."""

    __slots__ = ("cfg", "xp", "dtype_name", "window", "filterbank")

    def __init__(self, cfg: MelConfig, xp: Any, device: Any, dtype_name: str):
        dt = getattr(xp, dtype_name)
        self.cfg, self.xp, self.dtype_name = cfg, xp, dtype_name
        plan = host_plan(cfg, dtype_name)
        self.window = None if plan.window is None else from_host(plan.window, xp, device=device, dtype=dt)
        self.filterbank = from_host(plan.filterbank, xp, device=device, dtype=dt)

    def __call__(self, x: Any, *, max_memory: int | None = None) -> Any:
        xp, cfg = self.xp, self.cfg
        dt = getattr(xp, self.dtype_name)
        if x.dtype != dt:
            x = xp.astype(x, dt)
        batch_shape, n = tuple(x.shape[:-1]), x.shape[-1]
        x2 = xp.reshape(x, (math.prod(batch_shape), n))
        mel = mel_power(x2, xp, cfg, window=self.window, filterbank=self.filterbank, max_memory=max_memory)
        mel = xp.permute_dims(mel, (0, 2, 1))
        if cfg.power_to_db:
            mel = db_unclipped(mel, xp, min_power=cfg.min_power, ref_power=cfg.ref_power)
            if mel.shape[0] > 0:
                mel = clip_top_db(mel, xp, top_db=cfg.top_db, scope=cfg.top_db_scope)
        return xp.reshape(mel, (*batch_shape, cfg.num_mel_bins, mel.shape[-1]))
