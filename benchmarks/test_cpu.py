"""CPU benchmarks: arraymel's NumPy path against librosa, Keras (NumPy backend) and arraymel's generic path.

Same input (``arraymel.bench.workloads.make_batch``: 16 clips of 10 s, one clip of 10 s, 10,000 clips
of 400 samples, at 16 kHz, float32), same parameters, one group per workload so the ratios are
read within one run; within a group the libraries run interleaved (``bench_peer``'s ``interleave``)::

    pytest benchmarks --benchmark-only

librosa (htk=True, norm=None, reflect padding, ``power_to_db`` over the whole batch) computes
triangles linear in Hz, a few hundredths of a dB from Keras's by design; the rest compute
Keras's numbers. Peers that are not installed are skipped with the reason.
"""

from __future__ import annotations

import pytest

from arraymel.bench.workloads import WORKLOADS

CPU_PEERS = ["arraymel", "arraymel-generic", "librosa", "keras"]
CPU_WORKLOADS = ["keras-16x10s", "speech-16x10s", "keras-1x10s", "keras-10000x0.025s", "speech-10000x0.025s"]

_BATCHES: dict[str, object] = {}


def _batch(name: str):
    if name not in _BATCHES:
        _BATCHES[name] = WORKLOADS[name].make_batch()
    return _BATCHES[name]


@pytest.mark.parametrize("peer", CPU_PEERS)
@pytest.mark.parametrize("workload", CPU_WORKLOADS)
def test_cpu(bench_peer, workload, peer):
    w = WORKLOADS[workload]
    median = bench_peer(peer, w, "cpu", x_host=_batch(workload), interleave=CPU_PEERS)
    assert median is None or median > 0
