"""Thread control of the NumPy path: ``workers=``, ``set_workers``, ``ARRAYMEL_NUM_THREADS``, the pool, binding,
and no other library's threads started, limited or left changed by a call (tests/test_threads_citizen.py has
concurrent calls, other libraries' thread counts and worker processes)."""

from __future__ import annotations

import os
import pickle
import threading
import time

import numpy as np
import pytest

import arraymel
from arraymel import _threads as _workers
from arraymel._numpy import pipeline
from arraymel._threads import binding, pool

X = np.random.default_rng(3).standard_normal((3, 160000)).astype(np.float32)  # 3 clips of 10 s: 6 tiles or more


def _task_cpu_ns() -> dict[int, int]:
    """CPU time of every thread of this process (Linux), by native thread id."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                out[int(tid)] = int(f.read().split()[0])
        except OSError:  # a thread that just ended
            pass
    return out


class BlockSpy:
    """Wraps ``NumpyState._mel`` (one call per block) to record which threads computed and BLAS's threads there."""

    def __init__(self, monkeypatch, blas=None):
        self.threads: set[int] = set()
        self.native: set[int] = set()
        self.blas_threads: set[int] = set()
        real = pipeline.NumpyState._mel

        def spy(state, p, o, dense):
            self.threads.add(threading.get_ident())
            self.native.add(threading.get_native_id())
            if blas is not None:
                self.blas_threads.update(lib["num_threads"] for lib in blas.info())
            return real(state, p, o, dense)

        monkeypatch.setattr(pipeline.NumpyState, "_mel", spy)

    def clear(self):
        self.threads.clear()
        self.native.clear()
        self.blas_threads.clear()


SPEECH = dict(fft_length=400, sequence_stride=160, num_mel_bins=80)  # products over OpenBLAS's threshold unless split


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="per-thread CPU times come from Linux's /proc")
def test_a_call_computes_on_exactly_workers_threads_and_wakes_no_blas_thread(monkeypatch):
    """No BLAS limit is set, so no product inside a block may be large enough for BLAS to use its own threads:
    OpenBLAS keeps its setting inside the call, and no thread but the call's own gets CPU time from it, for the
    banded products (speech settings: the largest before splitting) and the dense one (a NaN sample)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    blas = threadpoolctl.ThreadpoolController().select(user_api="blas")
    assert blas.info(), "NumPy's BLAS is not visible to threadpoolctl"
    spy = BlockSpy(monkeypatch, blas)
    a = np.ones((500, 500))
    expected = arraymel.mel_spectrogram(X, workers=1)
    with blas.limit(limits=2):  # a BLAS pool of two threads, as on the 2-core CI machine
        for workers in (1, 2, 3):
            spy.clear()
            a @ a  # the process's BLAS pool was busy just before (its threads still spin)
            out = arraymel.mel_spectrogram(X, workers=workers)
            np.testing.assert_array_equal(out, expected)  # same blocks whatever the thread count
            assert len(spy.threads) == workers, (workers, spy.threads)
            if workers == 1:
                assert spy.threads == {threading.get_ident()}  # on the calling thread
            assert spy.blas_threads == {2}  # BLAS keeps its own setting in every block

        # What the OS sees: once OpenBLAS's threads sleep again, a call runs on its own workers only.
        x = np.tile(X, (2, 1))
        nan = x.copy()
        nan[:, 100] = np.nan  # every tile that reads sample 100 takes the dense product (mels x every bin)
        for params, batch in ((SPEECH, x), ({}, nan)):
            spy.clear()
            arraymel.mel_spectrogram(batch, workers=2, **params)  # warm: the state is built outside the measure
            spy.clear()
            a @ a
            time.sleep(0.5)  # OpenBLAS's threads spin about 0.1 s after a call, then sleep
            before = _task_cpu_ns()
            arraymel.mel_spectrogram(batch, workers=2, **params)
            after = _task_cpu_ns()
            used = {tid: (after[tid] - before.get(tid, 0)) / 1e6 for tid in after}
            others = {tid: ms for tid, ms in used.items() if tid not in spy.native and tid != threading.get_native_id()}
            assert len(spy.native) == 2 and all(used[t] > 1.0 for t in spy.native), used
            assert sum(others.values()) < 2.0, f"threads other than arraymel's two workers used CPU (ms): {others}"


@pytest.mark.parametrize("params, scale", [(SPEECH, 1.0), ({}, 1e15)], ids=["banded", "dense"])
def test_split_products_equal_whole_ones_within_rounding_and_depend_on_shapes_only(params, scale):
    """A product over OpenBLAS's threshold is split over frames (and rows, for the dense product that samples too
    large for the banded one take): the bands agree with one whole product within float32 rounding, and a clip's
    numbers are the same alone and in a batch."""
    x = X[:2] * np.float32(scale)
    split = arraymel.mel_spectrogram(x, workers=2, power_to_db=False, **params)
    saved = pipeline.MAX_PRODUCT
    pipeline.MAX_PRODUCT = 1 << 62
    try:
        whole = arraymel.mel_spectrogram(x, workers=2, power_to_db=False, **params)
    finally:
        pipeline.MAX_PRODUCT = saved
    assert np.isfinite(split).all()
    np.testing.assert_allclose(split, whole, rtol=2e-6, atol=0)
    np.testing.assert_array_equal(arraymel.mel_spectrogram(x[1:], workers=1, power_to_db=False, **params), split[1:])


def test_a_small_call_computes_on_the_calling_thread_alone(monkeypatch):
    """One 10 s clip (two tiles with Keras defaults) is under pipeline.MIN_PARALLEL_FRAME_SAMPLES: however many
    workers are asked for, it does not wake the pool; three clips do, and give the same bytes either way."""
    spy = BlockSpy(monkeypatch)
    one = X[:1]
    assert one.shape[1] // 512 * 2048 < pipeline.MIN_PARALLEL_FRAME_SAMPLES <= X.shape[0] * (X.shape[1] // 512) * 2048
    out = arraymel.mel_spectrogram(one, workers=2, top_db=None)
    assert spy.threads == {threading.get_ident()}
    spy.clear()
    batch = arraymel.mel_spectrogram(X, workers=2, top_db=None)
    assert len(spy.threads) == 2
    np.testing.assert_array_equal(batch[:1], out)


def test_workers_argument_on_the_function_the_class_and_in_scope(monkeypatch):
    seen = []
    real = pipeline.NumpyState.__call__

    def spy(state, x, **kw):
        seen.append(kw["workers"])  # the thread count the NumPy path is given (resolved by the caller)
        return real(state, x, **kw)

    monkeypatch.setattr(pipeline.NumpyState, "__call__", spy)
    monkeypatch.delenv(_workers.ENV, raising=False)
    cpus = _workers.cpu_count()
    x = X[:, :8000]
    arraymel.mel_spectrogram(x)
    arraymel.mel_spectrogram(x, workers=1)
    arraymel.mel_spectrogram(x, workers=-1)
    with arraymel.set_workers(3):
        assert arraymel.get_workers() == 3
        arraymel.mel_spectrogram(x)
        with arraymel.set_workers(1):
            arraymel.mel_spectrogram(x)
        arraymel.mel_spectrogram(x, workers=2)  # the argument wins over the scope
        arraymel.MelSpectrogram(workers=2)(x)  # and so does the layer's setting
        arraymel.MelSpectrogram(workers=2)(x, workers=1)  # and the call's over the layer's
        pickle.loads(pickle.dumps(arraymel.MelSpectrogram(workers=2)))(x)  # a pickled layer keeps its setting
    assert arraymel.get_workers() == cpus
    monkeypatch.setenv(_workers.ENV, "1")
    arraymel.mel_spectrogram(x)
    assert seen == [cpus, 1, cpus, 3, 1, 2, 2, 1, 2, 1]
    assert repr(arraymel.MelSpectrogram(workers=2)) == "MelSpectrogram(workers=2)"


def test_workers_reach_the_numpy_path_for_a_cpu_tensor(monkeypatch):
    torch = pytest.importorskip("torch")
    seen = []
    real = pipeline.NumpyState.__call__
    monkeypatch.setattr(pipeline.NumpyState, "__call__", lambda st, x, **kw: seen.append(kw["workers"]) or real(st, x, **kw))
    out = arraymel.mel_spectrogram(torch.from_numpy(X[:, :8000]), workers=1)
    assert isinstance(out, torch.Tensor) and seen == [1]


def test_set_workers_is_local_to_the_calling_thread():
    got = []
    with arraymel.set_workers(1):
        t = threading.Thread(target=lambda: got.append(arraymel.get_workers()))
        t.start()
        t.join()
        assert arraymel.get_workers() == 1
    assert got == [_workers.get_workers()]


def test_workers_in_get_config_only_when_set():
    assert "workers" not in arraymel.MelSpectrogram().get_config()
    layer = arraymel.MelSpectrogram(num_mel_bins=40, workers=-1)
    cfg = layer.get_config()
    assert cfg["workers"] == -1  # kept as given: resolved on the machine that runs it
    assert arraymel.MelSpectrogram.from_config(cfg).workers == -1


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (-10_000, ValueError), (1.5, TypeError), (True, TypeError),
                                      ("2", TypeError)])
def test_bad_workers_are_refused_naming_the_parameter(bad, exc):
    with pytest.raises(exc, match=r"workers=.* is not allowed: workers must be None"):
        arraymel.mel_spectrogram(X[0, :4000], workers=bad)
    with pytest.raises(exc, match="workers"):
        arraymel.MelSpectrogram(workers=bad)
    with pytest.raises(exc, match="workers"):
        with arraymel.set_workers(bad):
            pass


def test_bad_environment_value_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv(_workers.ENV, "many")
    with pytest.raises(ValueError, match="ARRAYMEL_NUM_THREADS='many' is not allowed"):
        arraymel.mel_spectrogram(X[0, :4000])
    monkeypatch.setenv(_workers.ENV, "0")
    with pytest.raises(ValueError, match="ARRAYMEL_NUM_THREADS=0 is not allowed"):
        arraymel.get_workers()


def test_a_failing_block_raises_after_every_worker_stopped():
    done = []

    def work(i):
        if i == 3:
            raise RuntimeError("block 3")
        done.append(i)

    with pytest.raises(RuntimeError, match="block 3"):
        _workers.run_parallel(work, range(8), 2)
    assert 3 not in done and threading.active_count() >= 1


# ---------------------------------------------------------------------- binding a call's threads to CPUs
def _can_bind() -> bool:
    """Linux, two CPUs or more, and an OS that lets a thread set its own mask (a sandbox may refuse)."""
    if not hasattr(os, "sched_setaffinity") or _workers.cpu_count() < 2:
        return False
    try:
        os.sched_setaffinity(0, os.sched_getaffinity(0))
    except OSError:
        return False
    return True


needs_binding = pytest.mark.skipif(not _can_bind(), reason="needs Linux CPU affinity that the OS lets a thread set, and 2 CPUs")


def _batch_for(n: int) -> np.ndarray:
    """The fewest 10 s clips (two blocks each) that keep n threads busy in a call too big to run on one thread."""
    return np.tile(X[:1], (max(2, -(-n // 2)), 1))


class MaskSpy:
    """Wraps ``NumpyState._mel`` (one call per block) to record each computing thread's CPU mask there."""

    def __init__(self, monkeypatch):
        self.masks: dict[int, set[frozenset]] = {}
        self.caller_masks: set[frozenset] = set()
        caller = threading.get_native_id()
        real = pipeline.NumpyState._mel

        def spy(state, p, o, dense):
            self.masks.setdefault(threading.get_native_id(), set()).add(frozenset(os.sched_getaffinity(0)))
            self.caller_masks.add(frozenset(os.sched_getaffinity(caller)))
            return real(state, p, o, dense)

        monkeypatch.setattr(pipeline.NumpyState, "_mel", spy)


@needs_binding
def test_a_call_on_every_cpu_binds_each_thread_to_its_own_cpu_then_restores_every_mask(monkeypatch):
    monkeypatch.setenv(binding.PIN_ENV, "1")  # binding is opt-in
    full = frozenset(os.sched_getaffinity(0))
    n = len(full)
    x = _batch_for(n)
    expected = arraymel.mel_spectrogram(x, workers=1)
    spy = MaskSpy(monkeypatch)
    caller = threading.get_native_id()
    out = arraymel.mel_spectrogram(x, workers=n)
    np.testing.assert_array_equal(out, expected)  # binding moves threads, never numbers
    assert caller not in spy.masks and spy.caller_masks == {full}  # the calling thread waits, its mask untouched
    assert len(spy.masks) == n, spy.masks
    cpus = []
    for tid, masks in spy.masks.items():
        assert len(masks) == 1, (tid, masks)  # one CPU for the whole call
        (mask,) = masks
        assert len(mask) == 1 and mask <= full, mask
        cpus.append(next(iter(mask)))
    assert sorted(cpus) == sorted(full)  # each thread its own CPU
    for tid in spy.masks:  # the caller and the pool threads get their masks back
        assert frozenset(os.sched_getaffinity(tid)) == full, tid


@needs_binding
def test_no_binding_with_a_cpu_to_spare_more_threads_than_cpus_or_turned_off(monkeypatch):
    monkeypatch.setenv(binding.PIN_ENV, "1")  # binding is opt-in
    full = frozenset(os.sched_getaffinity(0))
    n = len(full)
    x = _batch_for(n + 1)
    assert binding.cpus_to_bind(n) is not None
    assert binding.cpus_to_bind(n)[0] in full
    with monkeypatch.context() as m:
        m.setattr(binding.os, "sched_getaffinity", lambda pid: set(range(n + 1)))
        assert binding.cpus_to_bind(n) is None  # a CPU to spare: the OS may place the threads better
    assert binding.cpus_to_bind(n + 1) is None  # oversubscribed on purpose: nothing to bind one-to-one
    spy = MaskSpy(monkeypatch)
    arraymel.mel_spectrogram(x, workers=n + 1)
    assert threading.get_native_id() in spy.masks  # the calling thread computes, as without binding
    assert all(masks == {full} for masks in spy.masks.values()), spy.masks
    for off in ("0", ""):  # turned off, and off when unset: the default
        monkeypatch.setenv(binding.PIN_ENV, off)
        spy.masks.clear()
        arraymel.mel_spectrogram(x, workers=n)
        assert len(spy.masks) == n and all(masks == {full} for masks in spy.masks.values()), spy.masks
    monkeypatch.delenv(binding.PIN_ENV)
    spy.masks.clear()
    arraymel.mel_spectrogram(x, workers=n)
    assert len(spy.masks) == n and all(masks == {full} for masks in spy.masks.values()), spy.masks
    monkeypatch.setenv(binding.PIN_ENV, "sometimes")
    for workers in (1, n):  # refused on every call, not only on calls that would bind
        with pytest.raises(ValueError, match="ARRAYMEL_PIN_THREADS='sometimes' is not allowed: it must be 1, true"):
            arraymel.mel_spectrogram(X[0, :16000], workers=workers)


@needs_binding
def test_a_call_while_another_is_in_flight_leaves_placement_to_the_os(monkeypatch):
    """Two concurrent calls binding their calling threads could put both on one CPU: only a call alone binds."""
    monkeypatch.setenv(binding.PIN_ENV, "1")  # binding is opt-in
    full = frozenset(os.sched_getaffinity(0))
    n = len(full)
    held, release = threading.Event(), threading.Event()

    def other_call_in_flight():
        assert pool._enter()  # what a parallel call running on another thread holds
        held.set()
        release.wait()
        pool._leave()

    t = threading.Thread(target=other_call_in_flight)
    t.start()
    held.wait()
    try:
        spy = MaskSpy(monkeypatch)
        arraymel.mel_spectrogram(_batch_for(n), workers=n)
    finally:
        release.set()
        t.join()
    assert len(spy.masks) == n and all(masks == {full} for masks in spy.masks.values()), spy.masks


@needs_binding
def test_an_os_refusing_to_bind_changes_nothing_but_placement(monkeypatch):
    monkeypatch.setenv(binding.PIN_ENV, "1")  # binding is opt-in
    n = _workers.cpu_count()
    x = _batch_for(n)
    expected = arraymel.mel_spectrogram(x, workers=1)

    def refuse(pid, mask):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(binding.os, "sched_setaffinity", refuse)
    np.testing.assert_array_equal(arraymel.mel_spectrogram(x, workers=n), expected)


@needs_binding
def test_pool_threads_started_by_a_binding_call_keep_the_full_mask():
    """A new thread inherits its creator's mask: a pool thread started by a bound thread would stay on one CPU for
    good. In a fresh process, so that the binding call starts the pool."""
    import subprocess
    import sys

    code = (
        "import os, threading, numpy as np, arraymel\n"
        "from arraymel._threads import pool as w\n"
        "full = os.sched_getaffinity(0); n = len(full)\n"
        "assert not w._HELPERS\n"
        "arraymel.mel_spectrogram(np.ones((max(2, -(-n // 2)), 160000), np.float32), workers=n)\n"
        "assert len(w._HELPERS) == n\n"
        "bad = [h.native_id for h in w._HELPERS if os.sched_getaffinity(h.native_id) != full]\n"
        "assert os.sched_getaffinity(0) == full\n"
        "print('bad', bad)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != _workers.ENV}
    env[binding.PIN_ENV] = "1"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "bad []", r.stdout
