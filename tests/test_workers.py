"""Thread control of the NumPy path: ``workers=``, ``set_workers``, ``ARRAYMEL_NUM_THREADS``, and BLAS
held to one thread inside a call (issue 10: no oversubscription)."""

from __future__ import annotations

import os
import pickle
import threading
import time

import numpy as np
import pytest

import arraymel
from arraymel._numpy import pipeline
from arraymel._numpy import workers as _workers

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

    def __init__(self, monkeypatch, blas):
        self.threads: set[int] = set()
        self.native: set[int] = set()
        self.blas_threads: set[int] = set()
        real = pipeline.NumpyState._mel

        def spy(state, p, o, dense):
            self.threads.add(threading.get_ident())
            self.native.add(threading.get_native_id())
            self.blas_threads.update(lib["num_threads"] for lib in blas.info())
            return real(state, p, o, dense)

        monkeypatch.setattr(pipeline.NumpyState, "_mel", spy)

    def clear(self):
        self.threads.clear()
        self.native.clear()
        self.blas_threads.clear()


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="per-thread CPU times come from Linux's /proc")
def test_inside_a_call_blas_has_one_thread_and_exactly_workers_threads_compute(monkeypatch):
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
            assert spy.blas_threads == {1}  # BLAS reported one thread in every block
            assert {lib["num_threads"] for lib in blas.info()} == {2}  # and its own setting is back after the call

        # What the OS sees: once the pool's threads sleep again, a call runs on its own workers only;
        # no BLAS thread (nor any other) gets CPU time from it. A NaN sample sends every block through
        # the dense product (mels x bins x frames): products large enough for OpenBLAS to use its threads.
        spy.clear()
        x = np.tile(X, (2, 1))
        x[0, 100] = np.nan
        a @ a
        time.sleep(0.5)  # OpenBLAS's threads spin about 0.1 s after a call, then sleep
        before = _task_cpu_ns()
        arraymel.mel_spectrogram(x, workers=2)
        after = _task_cpu_ns()
    used = {tid: (after[tid] - before.get(tid, 0)) / 1e6 for tid in after}
    others = {tid: ms for tid, ms in used.items() if tid not in spy.native and tid != threading.get_native_id()}
    assert len(spy.native) == 2 and all(used[t] > 1.0 for t in spy.native), used
    assert sum(others.values()) < 2.0, f"threads other than arraymel's two workers used CPU (ms): {others}"


def test_a_small_call_computes_on_the_calling_thread_alone(monkeypatch):
    """One 10 s clip (two tiles with Keras defaults) is under pipeline.MIN_PARALLEL_FRAME_SAMPLES: however many
    workers are asked for, it does not wake the pool; three clips do, and give the same bytes either way."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    spy = BlockSpy(monkeypatch, threadpoolctl.ThreadpoolController().select(user_api="blas"))
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


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # the child only reads BLAS settings and exits
def test_a_child_forked_during_a_call_gets_its_blas_threads_back():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = {i["filepath"]: i["num_threads"] for i in threadpoolctl.threadpool_info()}
    if not before or max(before.values()) < 2:
        pytest.skip("no multi-threaded BLAS here")
    held, release = threading.Event(), threading.Event()

    def call_in_progress():
        with _workers.blas_single_threaded():  # what another thread's call holds while the fork happens
            held.set()
            release.wait()

    t = threading.Thread(target=call_in_progress)
    t.start()
    held.wait()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no arraymel call is running here, so BLAS has its own setting again
        info = {i["filepath"]: i["num_threads"] for i in threadpoolctl.threadpool_info()}
        os.write(w, b"1" if info == before else b"0")
        os._exit(0)
    os.close(w)
    got = os.read(r, 1)
    os.waitpid(pid, 0)
    release.set()
    t.join()
    assert got == b"1"
