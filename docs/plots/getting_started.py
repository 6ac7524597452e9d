import soundfile as sf  # the cli extra; any reader that gives float32 works

import arraymel
import arraymel.plot

x, sr = sf.read("speech.wav", dtype="float32")   # (samples,) float32, 16000
params = dict(sampling_rate=sr, fft_length=512, sequence_length=400,
              sequence_stride=160, num_mel_bins=80)
S = arraymel.mel_spectrogram(x, **params)         # (80, frames) float32 dB
print(S.shape, S.dtype)
arraymel.plot.specshow(S, title="speech.wav", **params)
