"""Goldens of the option grids of the references outside the test extra (tests/test_presets_options.py reads
options.npz): torchaudio's MelSpectrogram / AmplitudeToDB and compliance.kaldi.fbank per option, openai-whisper's
``padding=``, and the signatures' defaults (so that the defaults test sees torchaudio's and openai-whisper's).
Run it as generate.py says (a throwaway venv, or ``pip install --no-deps --target DIR torchaudio openai-whisper``
beside the test extra's torch and ``PYTHONPATH=DIR``):
    python tests/presets_goldens/generate_options.py
"""

import inspect
import json
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import generate  # noqa: E402  (its stand-ins for torchaudio's extension and whisper's package)

torch, torchaudio, whisper = generate.torch, generate.torchaudio, generate.whisper
import torchaudio.compliance.kaldi  # noqa: E402, F811  (the submodule itself, after generate's stand-ins)

#: Each case: (MelSpectrogram options, AmplitudeToDB options or None for no dB). Window functions by name in
#: torch (the test passes the same functions).
TORCHAUDIO = {
    "slaney_slaney": ({"norm": "slaney", "mel_scale": "slaney"}, {}),
    "slaney_htk": ({"norm": "slaney", "mel_scale": "htk"}, {}),
    "none_slaney": ({"norm": None, "mel_scale": "slaney", "n_mels": 64}, {}),
    "hamming": ({"window_fn": "hamming_window"}, {}),
    "blackman": ({"window_fn": "blackman_window"}, {}),
    "kaiser": ({"window_fn": "kaiser_window", "wkwargs": {"periodic": True, "beta": 8.0}}, {}),
    "pad": ({"pad": 50}, {}),
    "no_center": ({"center": False}, {}),
    "constant": ({"pad_mode": "constant"}, {}),
    "replicate": ({"pad_mode": "replicate"}, {}),
    "circular": ({"pad_mode": "circular"}, {}),
    "normalized": ({"normalized": True}, {}),
    "frame_length": ({"normalized": "frame_length"}, {}),
    "magnitude": ({"power": 1.0}, {"stype": "magnitude"}),
    "power_only": ({}, None),
    "top_db": ({"n_mels": 80}, {"top_db": 60.0}),
    "win300": ({"n_fft": 512, "win_length": 300, "hop_length": 128, "n_mels": 40}, {}),
    "no_center_win300": ({"n_fft": 512, "win_length": 300, "hop_length": 128, "n_mels": 40, "center": False}, {}),
}
#: torchaudio.compliance.kaldi.fbank options beyond kaldi-native-fbank's (which the test runs live).
KALDI = {
    "subtract_mean": {"subtract_mean": True, "num_mel_bins": 40},
    "energy_floor": {"use_energy": True, "energy_floor": 1.0},
    "snip_false": {"snip_edges": False, "num_mel_bins": 40},
}


#: The input of every case: half a second of generate.py's test signal (small goldens).
HALF = 8000 + 77


def defaults(fn) -> dict:
    out = {}
    for name, p in inspect.signature(fn).parameters.items():
        if p.default is inspect.Parameter.empty or name == "self":
            continue
        d = p.default
        out[name] = getattr(d, "__name__", d) if callable(d) else d
    return out


def main() -> None:
    x = generate.speechlike(HALF, 16000, seed=generate.SEED)
    t = torch.from_numpy(x)
    out = {"torchaudio_version": np.array(torchaudio.__version__)}
    for name, (mel, db) in TORCHAUDIO.items():
        mel = dict(mel)
        if "window_fn" in mel:
            mel["window_fn"] = getattr(torch, mel["window_fn"])
        y = torchaudio.transforms.MelSpectrogram(sample_rate=16000, **mel)(t)
        if db is not None:
            y = torchaudio.transforms.AmplitudeToDB(**db)(y)
        out[f"torchaudio_{name}"] = y.numpy()
    for name, opts in KALDI.items():
        out[f"kaldi_{name}"] = torchaudio.compliance.kaldi.fbank(t[None] * 32768, dither=0.0, **opts).numpy().T
    out["whisper_padding"] = whisper.audio.log_mel_spectrogram(t, n_mels=80, padding=16000).numpy()
    sigs = {"MelSpectrogram": defaults(torchaudio.transforms.MelSpectrogram.__init__),
            "AmplitudeToDB": defaults(torchaudio.transforms.AmplitudeToDB.__init__),
            "fbank": defaults(torchaudio.compliance.kaldi.fbank),
            "log_mel_spectrogram": defaults(whisper.audio.log_mel_spectrogram)}
    out["defaults"] = np.array(json.dumps(sigs))
    np.savez_compressed(pathlib.Path(__file__).with_name("options.npz"), **out)


if __name__ == "__main__":
    main()
