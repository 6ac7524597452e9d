"""`arraymel demo` writes a labelled PNG and reports shape, dtype, device and time."""

import numpy as np

from arraymel.cli import main
from arraymel.demo import synth_example


def test_demo_writes_a_png_and_reports(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert main(["demo", "--out", str(out), "--seconds", "1", "--device", "cpu"]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    text = capsys.readouterr().out
    assert "shape (128, 126)" in text and "float32" in text and "on cpu" in text and "ms" in text


def test_synthetic_clip_has_its_components():
    x = synth_example(4.0, 16000)
    assert x.dtype == np.float32 and x.shape == (64000,)
    spec = np.abs(np.fft.rfft(x[40000:48000]))  # 2.5-3.0 s: the tone's fundamental near 220 Hz
    freqs = np.fft.rfftfreq(8000, 1 / 16000)
    assert 200 < freqs[np.argmax(spec[freqs < 400])] < 240
