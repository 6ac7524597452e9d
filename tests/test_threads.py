"""arraymel in someone else's process: overlapping calls from several threads change no other library's thread
counts on any thread, a user's own limits hold, concurrent calls equal sequential ones, a child forked during a
call computes, and worker processes default to one thread."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import arraymel
from arraymel._numpy import pipeline

threadpoolctl = pytest.importorskip("threadpoolctl")

X = np.random.default_rng(5).standard_normal((3, 160000)).astype(np.float32)  # 6 tiles: a call on two threads
WAIT = 30  # seconds: an event that never comes fails the test instead of hanging it


def pools() -> dict:
    """What the calling thread's BLAS and OpenMP libraries (and torch, when imported) say their threads are."""
    out = {(i["user_api"], i["filepath"]): i["num_threads"] for i in threadpoolctl.threadpool_info()}
    if "torch" in sys.modules:
        out["torch"] = sys.modules["torch"].get_num_threads()
    return out


class Overlap:
    """Makes two calls overlap in the order that leaked before: A starts, B starts, A ends, B ends.

    Wraps ``NumpyState._mel`` (one call per block): the first block that A's calling thread computes waits until B
    is inside its own call; B's first block waits until ``release_b`` is set (by default when A's call returned).
    """

    def __init__(self, monkeypatch):
        self.a_inside, self.b_inside, self.release_b = threading.Event(), threading.Event(), threading.Event()
        self.a = self.b = None
        waited: set[int] = set()
        real = pipeline.NumpyState._mel

        def spy(state, p, o, dense):
            me = threading.get_ident()
            if me not in waited and me in (self.a, self.b):
                waited.add(me)
                if me == self.a:
                    self.a_inside.set()
                    assert self.b_inside.wait(WAIT)
                else:
                    self.b_inside.set()
                    assert self.release_b.wait(WAIT)
            return real(state, p, o, dense)

        monkeypatch.setattr(pipeline.NumpyState, "_mel", spy)

    def run(self, call_a, call_b, *, auto_release: bool = True) -> tuple[threading.Thread, threading.Thread, dict]:
        """Starts A and B (each ``call_x()`` runs in its own thread and returns what it saw); returns the threads
        (B may still be waiting for ``release_b``) and a dict that each thread fills with its result."""
        seen: dict = {}
        errors: list = []

        def thread_a():
            self.a = threading.get_ident()
            try:
                seen["a"] = call_a()
            except BaseException as e:  # reported by the test thread
                errors.append(e)
            finally:
                if auto_release:
                    self.release_b.set()

        def thread_b():
            self.b = threading.get_ident()
            try:
                seen["b"] = call_b()
            except BaseException as e:
                errors.append(e)

        ta = threading.Thread(target=thread_a)
        ta.start()
        assert self.a_inside.wait(WAIT), errors
        tb = threading.Thread(target=thread_b)
        tb.start()
        seen["errors"] = errors
        return ta, tb, seen


def _call_and_report(expected: np.ndarray):
    """A thread's work: its pools before, one parallel call (checked against ``expected``), its pools after."""

    def run():
        before = pools()
        out = arraymel.mel_spectrogram(X, workers=2)
        np.testing.assert_array_equal(out, expected)
        return before, pools()

    return run


def test_overlapping_calls_from_two_threads_leave_every_threads_pools_as_they_were(monkeypatch):
    """The leak of issue 24: after two overlapping calls, BLAS (what ``numpy.dot`` uses), OpenMP and torch report on
    every thread, the two callers and this one, the thread counts they had before."""
    pytest.importorskip("torch")  # its OpenMP runtime is per thread: the case a limit restored elsewhere leaves set
    expected = arraymel.mel_spectrogram(X, workers=1)  # first: SciPy's own BLAS, if any, loads now
    blas = [v for k, v in pools().items() if k[0] == "blas"]
    if not blas or max(blas) < 2:
        pytest.skip("BLAS runs one thread here: a leaked limit of one would look the same")
    main_before = pools()
    overlap = Overlap(monkeypatch)
    ta, tb, seen = overlap.run(_call_and_report(expected), _call_and_report(expected))
    ta.join(WAIT)
    tb.join(WAIT)
    assert not seen["errors"], seen["errors"]
    for name in ("a", "b"):
        before, after = seen[name]
        assert after == before, (name, before, after)
    assert pools() == main_before
    a = np.ones((256, 256))
    np.testing.assert_allclose(a @ a, np.full((256, 256), 256.0))  # and numpy.dot still computes


USER_LIMITS_SCRIPT = """
import threading, numpy as np, torch, arraymel
from threadpoolctl import threadpool_info, threadpool_limits
from arraymel._numpy import pipeline

x = np.random.default_rng(8).standard_normal((3, 160000)).astype(np.float32)
held, release = threading.Event(), threading.Event()
real = pipeline.NumpyState._mel


def hold_first_block(state, p, o, dense):  # keeps one call in flight until the user has set a limit
    if threading.current_thread().name == "held" and not held.is_set():
        held.set()
        assert release.wait(30)
    return real(state, p, o, dense)


pipeline.NumpyState._mel = hold_first_block


def blas():
    return sorted(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")


def overlapping_calls():
    start = threading.Barrier(2)

    def calls():
        start.wait()
        for _ in range(3):
            arraymel.mel_spectrogram(x, workers=2)

    threads = [threading.Thread(target=calls) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


warm = threading.Thread(target=arraymel.mel_spectrogram, args=(x[:1, :1000],))  # SciPy's own BLAS, if any, loads
warm.start()  # on another thread, as in a web service (which thread sets OpenBLAS's count first matters to OpenBLAS)
warm.join()
before, torch_before = blas(), torch.get_num_threads()
assert max(before) >= 2, before
in_flight = threading.Thread(target=arraymel.mel_spectrogram, args=(x,), kwargs={"workers": 2}, name="held")
in_flight.start()  # another thread's call, in flight while the user sets a limit
assert held.wait(30)
with threadpool_limits(limits=1, user_api="blas"):
    torch.set_num_threads(1)
    release.set()
    in_flight.join()
    assert blas() == [1] * len(before), ("the user's limit was undone when another thread's call ended", blas())
    overlapping_calls()
    arraymel.mel_spectrogram(x, workers=2)
    assert blas() == [1] * len(before), ("the user's limit was undone by overlapping calls", blas())
    assert torch.get_num_threads() == 1
assert blas() == before, (blas(), before)
torch.set_num_threads(torch_before)
overlapping_calls()
assert blas() == before and torch.get_num_threads() == torch_before, (blas(), torch.get_num_threads())
print("ok")
"""


def test_a_users_threadpool_limits_and_torch_threads_hold_across_overlapping_calls():
    """A user's limit taken while another thread's call is in flight holds after that call and after overlapping
    calls, and only the user's block undoes it. In a fresh interpreter: which thread sets OpenBLAS's count first
    matters to OpenBLAS (once this process's main thread had set it, another thread's setting was ignored), and
    this interpreter's tests have set it already."""
    pytest.importorskip("torch")
    env = {k: v for k, v in os.environ.items() if k not in ("ARRAYMEL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                             "OMP_NUM_THREADS")}
    r = subprocess.run([sys.executable, "-c", USER_LIMITS_SCRIPT], capture_output=True, text=True, timeout=240, env=env)
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: BLAS runs one thread, so a limit of one changes nothing")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


JOBS = [  # (kind, params, input, workers): different configurations, paths and thread counts at once
    ("function", {}, X, None),
    ("function", dict(fft_length=400, sequence_stride=160, num_mel_bins=80), X[1:], 2),
    ("layer", dict(num_mel_bins=64, fft_length=1024, sequence_stride=256), X[:2], None),
    ("layer", {}, X[2], 1),
    ("function", dict(power_to_db=False), np.random.default_rng(6).standard_normal((40, 4000)).astype(np.float32), 2),
    ("layer", dict(fft_length=400, sequence_stride=160, num_mel_bins=80), X.astype(np.float64), None),
]


def _run(job, layers):
    kind, params, x, workers = job
    if kind == "function":
        return arraymel.mel_spectrogram(x, workers=workers, **params)
    return layers[id(job)](x, workers=workers)


@pytest.mark.parametrize("n_threads", [2, 4, 8])
def test_concurrent_calls_equal_sequential_ones(n_threads):
    layers = {id(job): arraymel.MelSpectrogram(**job[1]) for job in JOBS if job[0] == "layer"}  # shared by the threads
    expected = [_run(job, layers) for job in JOBS]
    start = threading.Barrier(n_threads)

    def caller(k: int) -> list[int]:
        start.wait(WAIT)
        order = [(k + i) % len(JOBS) for i in range(2 * len(JOBS))]  # each thread its own order, every job twice
        for j in order:
            np.testing.assert_array_equal(_run(JOBS[j], layers), expected[j], err_msg=f"job {j} on thread {k}")
        return order

    with ThreadPoolExecutor(n_threads) as ex:
        done = list(ex.map(caller, range(n_threads)))
    assert len(done) == n_threads


FORK_SCRIPT = """
import os, sys, threading, time, numpy as np, arraymel
from arraymel._numpy import pipeline
x = np.random.default_rng(7).standard_normal((3, 160000)).astype(np.float32)
expected = arraymel.mel_spectrogram(x, workers=1)
inside, stop = threading.Event(), threading.Event()
real = pipeline.NumpyState._mel
def slow(state, p, o, dense):  # keeps the parent's call in flight, its pool threads busy, while the fork happens
    inside.set()
    time.sleep(0.02)
    return real(state, p, o, dense)
pipeline.NumpyState._mel = slow
def calls():
    while not stop.is_set():
        arraymel.mel_spectrogram(x, workers=2)
t = threading.Thread(target=calls, daemon=True)
t.start()
for _ in range(3):
    inside.clear()
    inside.wait(30)
    pid = os.fork()
    if pid == 0:  # the child: a call on two threads, as the parent's were when it was forked
        pipeline.NumpyState._mel = real
        ok = np.array_equal(arraymel.mel_spectrogram(x, workers=2), expected)
        os._exit(0 if ok else 3)
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            sys.exit("a child forked during a call hung")
        time.sleep(0.05)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"a child forked during a call computed wrongly (status {status})")
stop.set()
t.join(30)
print("ok")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_while_a_call_runs_computes_correctly():
    """In a fresh interpreter (this one may hold JAX's threads, which make any fork unsafe)."""
    env = {k: v for k, v in os.environ.items() if k != "ARRAYMEL_NUM_THREADS"}
    r = subprocess.run([sys.executable, "-W", "ignore::DeprecationWarning", "-c", FORK_SCRIPT], capture_output=True,
                       text=True, timeout=240, env=env)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.stdout, r.stderr[-2000:])


WORKERS_SCRIPT = """
import json, multiprocessing as mp, os
from concurrent.futures import ProcessPoolExecutor
from torch.utils.data import DataLoader, Dataset
import arraymel
from arraymel import _threads


class Rules(Dataset):  # what a DataLoader worker's calls would take, without and with the user's own setting
    def __len__(self):
        return 4

    def __getitem__(self, i):
        if i % 2:
            with arraymel.set_workers(3):
                return list(_threads.default_rule())
        return list(_threads.default_rule())


if __name__ == "__main__":
    out = {"main": list(_threads.default_rule())}
    for ctx in ("fork", "spawn"):
        n = 2 if ctx == "fork" else 1  # a spawned worker imports torch afresh: one is enough
        dl = DataLoader(Rules(), batch_size=None, num_workers=n, multiprocessing_context=ctx, timeout=120)
        out["dataloader-" + ctx] = [list(r) for r in dl]
    with mp.get_context("spawn").Pool(1) as p:
        out["pool-spawn"] = list(p.apply(_threads.default_rule))
    with ProcessPoolExecutor(1, mp_context=mp.get_context("fork")) as ex:
        out["executor-fork"] = list(ex.submit(_threads.default_rule).result())
    os.environ["ARRAYMEL_NUM_THREADS"] = "2"  # the user's setting, inherited by the workers
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
        out["executor-env"] = list(ex.submit(_threads.default_rule).result())
    del os.environ["ARRAYMEL_NUM_THREADS"]
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        out["dask"] = None
    else:
        with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster, \\
                Client(cluster) as client:
            out["dask"] = list(client.submit(_threads.default_rule, pure=False).result())
    print(json.dumps(out))
"""


def test_worker_processes_and_dask_workers_default_to_one_thread_unless_the_user_says(tmp_path):
    """A torch DataLoader worker (fork and spawn), a multiprocessing and a concurrent.futures process worker and a
    Dask worker take one thread by default, and say why; ``set_workers`` and ``ARRAYMEL_NUM_THREADS`` win.
    In a fresh interpreter, as a user's script runs them (forking this one would copy JAX's threads)."""
    pytest.importorskip("torch")
    import json

    script = tmp_path / "workers_script.py"  # a file, so that spawned workers can import its Dataset
    script.write_text(WORKERS_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "ARRAYMEL_NUM_THREADS"}
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert got["main"] == [cpus, "CPUs available"]
    loader = [1, "one thread in a torch DataLoader worker"]
    for ctx in ("fork", "spawn"):
        assert got[f"dataloader-{ctx}"] == [loader, [3, "set_workers()"]] * 2, got
    process = [1, "one thread in a multiprocessing or concurrent.futures worker process"]
    assert got["pool-spawn"] == process and got["executor-fork"] == process
    assert got["executor-env"] == [2, "ARRAYMEL_NUM_THREADS"]
    if got["dask"] is not None:
        assert got["dask"] == [1, "one thread in a Dask worker"]


def test_show_config_names_the_rule_that_chose_the_count(monkeypatch):
    monkeypatch.delenv("ARRAYMEL_NUM_THREADS", raising=False)
    cfg = arraymel.show_config(mode="dicts")
    assert cfg["workers"]["source"] == "CPUs available" and cfg["workers"]["default"] == arraymel.get_workers()
    monkeypatch.setenv("ARRAYMEL_NUM_THREADS", "1")
    assert arraymel.show_config(mode="dicts")["workers"] == {**cfg["workers"], "default": 1,
                                                             "source": "ARRAYMEL_NUM_THREADS", "env": "1"}
    with arraymel.set_workers(2):
        assert arraymel.show_config(mode="dicts")["workers"]["source"] == "set_workers()"
