# arraymel against the live Keras 3 layer (NumPy backend) on the speech-like clip: the difference
# in dB at every point, with the exact (float64) filterbank and with filterbank="keras".
import os

os.environ.setdefault("KERAS_BACKEND", "numpy")
import keras
import matplotlib.pyplot as plt
import numpy as np
from sitedata import SAMPLING_RATE, speech_like

import arraymel

params = dict(sampling_rate=SAMPLING_RATE, fft_length=512, sequence_length=400, sequence_stride=160,
              num_mel_bins=80)
x = speech_like()
ref = np.asarray(keras.layers.MelSpectrogram(**params)(x[None]))[0]
fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), sharey=True, constrained_layout=True)
for ax, fb in zip(axes, ("exact", "keras")):
    S = arraymel.mel_spectrogram(x, filterbank=fb, **params)
    diff = S.astype(np.float64) - ref
    lim = max(np.abs(diff).max(), 1e-6)
    im = ax.imshow(diff, origin="lower", aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim,
                   extent=(0, x.size / SAMPLING_RATE, 0, params["num_mel_bins"]))
    ax.set_title(f'filterbank="{fb}"\nmax |diff| {np.abs(diff).max():.1e} dB', fontsize=10)
    ax.set_xlabel("time (s)")
    fig.colorbar(im, ax=ax, label="arraymel - Keras (dB)", format="%.0e")
axes[0].set_ylabel("mel band")
