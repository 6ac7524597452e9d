# The home page's picture: the mel spectrogram of the site's speech-like clip.
import matplotlib.pyplot as plt
from sitedata import SAMPLING_RATE, speech_like

import arraymel
from arraymel.plot import specshow

params = dict(sampling_rate=SAMPLING_RATE, fft_length=1024, sequence_length=400, sequence_stride=160,
              num_mel_bins=80, max_freq=8000)
S = arraymel.mel_spectrogram(speech_like(), **params)
fig, ax = plt.subplots(figsize=(9, 3.2), constrained_layout=True)
specshow(S, ax=ax, title="arraymel.mel_spectrogram of a speech-like clip (80 bands, 10 ms hop)", **params)
