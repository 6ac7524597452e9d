# Filterbank shapes (40 bands, 16 kHz, fft_length 2048): the mel scale (Keras's HTK against librosa's
# Slaney), librosa's area norm, and where each scale puts its bands.
import matplotlib.pyplot as plt
import numpy as np

import arraymel

common = dict(num_mel_bins=40, fft_length=2048, sampling_rate=16000, min_freq=0.0, max_freq=8000)
freqs = np.linspace(0, 8000, 1025)
fb = {kind: arraymel.mel_filterbank(filterbank=kind, **common)
      for kind in ("exact", "librosa", "librosa-nonorm", "librosa-htk-nonorm", "kaldi")}
colours = plt.cm.viridis(np.linspace(0, 0.9, 40))
fig, axes = plt.subplots(3, 1, figsize=(8, 7.4), constrained_layout=True)

ax = axes[0]
for band in range(0, 40, 3):
    ax.plot(freqs, fb["exact"][:, band], color=colours[band], lw=1.3)
    ax.plot(freqs, fb["librosa-nonorm"][:, band], color=colours[band], lw=1.1, ls="--")
ax.set_title('The mel scale: Keras / HTK ("exact", solid) against Slaney ("librosa-nonorm", dashed); '
             "every 3rd band", fontsize=9, loc="left")
ax.set_xlim(0, 8000)

ax = axes[1]
for band in range(0, 40, 3):
    ax.plot(freqs, fb["librosa"][:, band], color=colours[band], lw=1.3)
ax.set_title('librosa\'s area norm ("librosa"): each band\'s peak is 2 / its width in Hz', fontsize=9, loc="left")
ax.set_xlim(0, 8000)

ax = axes[2]
for kind, label, style in (("exact", 'HTK mel scale: Keras "exact", "kaldi", torchaudio', "-"),
                           ("librosa-nonorm", 'Slaney mel scale: "librosa", Whisper, NeMo', "--")):
    centres = freqs[np.argmax(fb[kind], axis=0)]  # the bin of each band's peak
    ax.plot(np.arange(40), centres, ls=style, marker="o", ms=3, label=label)
ax.set_title("Where the bands sit: the frequency of each band's peak", fontsize=9, loc="left")
ax.legend(fontsize=8)
ax.set_xlabel("band")
for ax in axes[:2]:
    ax.set_ylabel("weight")
    ax.set_xlabel("frequency (Hz)")
axes[2].set_ylabel("frequency (Hz)")
for ax in axes:
    ax.grid(alpha=0.3)
