# A real `arraymel corpus` run, made while the site is built: 60 WAV files of 0.5 to 12 s (the site's
# speech-like clip, repeated) to mel features with the CPU engine, then the time each output landed
# (its .npy file's modification time, written just before the fsync and rename that make it final),
# against the run's start. The manifest gives each file's duration.
import os
import pathlib
import sqlite3
import subprocess
import sys
import time

import matplotlib.pyplot as plt
import numpy as np
from sitedata import SAMPLING_RATE, speech_like, write_wav

root = pathlib.Path("corpus-timeline").resolve()
src, out = root / "in", root / "out"
src.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
clip = speech_like()
for i in range(60):
    seconds = rng.uniform(0.5, 12.0)
    write_wav(src / f"clip{i:02d}.wav", np.resize(clip, int(seconds * SAMPLING_RATE)) * rng.uniform(0.2, 1.0))
subprocess.run(["rm", "-rf", str(out)], check=True)

command = ["corpus", str(src), str(out), "-q", "--num-mel-bins", "80", "--fft-length", "400",
           "--sequence-stride", "160"]
t0 = time.time_ns()
subprocess.run([sys.executable, "-c", "import sys; from arraymel.cli import main; sys.exit(main())", *command],
               check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
wall = (time.time_ns() - t0) / 1e9

with sqlite3.connect(out / "manifest.sqlite") as db:
    rows = db.execute("SELECT output, duration_s FROM files WHERE status = 'ok'").fetchall()
durations = {(out / o): d for o, d in rows}
by_time = sorted(((out / o).stat().st_mtime_ns - t0) / 1e9 for o in durations)
audio = np.cumsum([durations[p] for p in sorted(durations, key=lambda p: p.stat().st_mtime_ns)])

fig, ax = plt.subplots(figsize=(8, 3.4), constrained_layout=True)
ax.step(by_time, audio, where="post", color="#c2410c", lw=1.6, label="audio written (s)")
ax.plot(by_time, audio, "o", ms=3.5, color="#1c1044", label="one output file landing")
ax.axvline(wall, color="0.5", ls="--", lw=1)
ax.text(wall, audio[-1] * 0.05, " command exits", color="0.35", fontsize=8)
ax.set_xlabel("seconds since `arraymel corpus` started (start-up, decoding, computing, writing)")
ax.set_ylabel("seconds of audio done")
ax.set_title(f"{len(rows)} files, {audio[-1]:.0f} s of audio, in {wall:.1f} s of wall time", fontsize=10)
ax.set_xlim(0, wall * 1.05)
ax.grid(alpha=0.3)
ax.legend(loc="upper left", fontsize=8)
