"""``arraymel bench``: a harness comparing devices and peer libraries, and the shared workloads.

- :mod:`arraymel.bench.workloads`: the named configurations, batch sizes and the deterministic
  test signal, shared with the pytest-benchmark suites in ``benchmarks/``.
- :mod:`arraymel.bench.peers`: one adapter per library (arraymel, arraymel-generic, librosa,
  keras, torchaudio, torch-stft, naive-cupy).
- :mod:`arraymel.bench.timing`: warm-up, CPU and CUDA-event timing, peak memory.
- :mod:`arraymel.bench.devices`: real device names (CPU model and cores, GPU name and memory).
- :mod:`arraymel.bench.run`: the measurement loop; :mod:`arraymel.bench.report`: table, JSON,
  Markdown, PNG; :mod:`arraymel.bench.schema`: the JSON schema; :mod:`arraymel.bench.cli`: the
  command line.

Importing this package imports only NumPy; each peer's library is imported when it runs.
"""
