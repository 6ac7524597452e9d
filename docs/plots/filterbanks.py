# Filterbank shapes: Keras's (HTK mel scale, peak 1), librosa's Slaney (area-normalised) and
# HTK-scale triangles, and Kaldi's; every fourth band of 40, 16 kHz, fft_length 512.
import matplotlib.pyplot as plt
import numpy as np

import arraymel

common = dict(num_mel_bins=40, fft_length=512, sampling_rate=16000, min_freq=0.0, max_freq=8000)
kinds = [("exact", "Keras / HTK mel scale, peak 1 (default)"),
         ("librosa", "librosa: Slaney scale, area-normalised"),
         ("librosa-htk-nonorm", "torchaudio: HTK scale, linear in Hz, peak 1"),
         ("kaldi", "Kaldi: mel banks, linear in mel")]
freqs = np.linspace(0, 8000, 257)
fig, axes = plt.subplots(len(kinds), 1, figsize=(9, 7.5), sharex=True, constrained_layout=True)
for ax, (kind, label) in zip(axes, kinds):
    fb = arraymel.mel_filterbank(filterbank=kind, **common)
    for band in range(0, 40, 4):
        ax.plot(freqs, fb[:, band], lw=1.2)
    ax.set_title(f'filterbank="{kind}": {label}', fontsize=10, loc="left")
    ax.set_ylabel("weight")
    ax.grid(alpha=0.3)
axes[-1].set_xlabel("frequency (Hz)")
