"""The parts of ``arraymel corpus`` one at a time: padded rows, buckets, discovery, settings, storage, CLI."""

from __future__ import annotations

import argparse
import json
import os
import warnings

import numpy as np
import pytest

import arraymel
from arraymel.corpus.batching import Batch, Bucketer, extended, row_length
from arraymel.corpus.discover import DiscoveryError, from_list, normalise_key, walk
from arraymel.corpus.settings import CorpusSettings, SettingsError, load_config_file
from arraymel.corpus.storage import TMP_MARK, OutputError, Writer, remove_leftovers


class _Item:
    def __init__(self, x: np.ndarray):
        self.audio = np.atleast_2d(x).astype(np.float32)

    @property
    def length(self) -> int:
        return self.audio.shape[-1]


# ------------------------------------------------------------------------------------------------ padded rows

LENGTHS = [1, 2, 3, 7, 100, 255, 256, 257, 399, 400, 401, 511, 512, 513, 1023, 1024, 1025, 2047, 2048, 2049, 4000, 16001]


@pytest.mark.parametrize("params", [
    {},  # Keras defaults: fft 2048, hop 512 (pad 1024)
    {"fft_length": 401, "sequence_length": 400, "sequence_stride": 160, "num_mel_bins": 40},  # odd fft
    {"fft_length": 512, "sequence_stride": 700, "num_mel_bins": 32, "window": "hamming"},  # hop > fft
])
def test_a_file_in_a_padded_row_has_exactly_its_own_frames(params):
    """The explicit right reflection makes every length, even shorter than the pad, exact in any longer row."""
    rng = np.random.default_rng(3)
    cfg = arraymel.MelConfig.create(**params)
    xs = [rng.standard_normal(n).astype(np.float32) * rng.uniform(0.01, 1) for n in LENGTHS]
    L = max(row_length(n, cfg) for n in LENGTHS) + 777
    batch = Batch(length=L, items=[_Item(x) for x in xs])
    buf = np.full(batch.rows * L + 5, np.nan, dtype=np.float32)  # a dirty reused buffer
    y = arraymel.mel_spectrogram(batch.build(cfg, buf), top_db=None, **params)
    for i, x in enumerate(xs):
        ref = arraymel.mel_spectrogram(x, top_db=None, **params)
        got = y[i, :, : ref.shape[-1]]
        assert np.max(np.abs(got - ref)) <= 1e-4, (params, len(x))


def test_the_explicit_extension_is_numpys_reflect():
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 5, 10):
        x = rng.standard_normal((2, n))
        for pad in (1, 4, 9, 30):
            np.testing.assert_array_equal(extended(x, pad), np.pad(x, ((0, 0), (pad, pad)), mode="reflect")[:, n + pad:])


def test_row_length_depends_on_the_file_only_and_wastes_at_most_a_32nd():
    cfg = arraymel.MelConfig.create()
    prev = 0
    for n in list(range(1, 5000, 7)) + [10**5, 10**6 + 3, 16000 * 3600]:
        L = row_length(n, cfg)
        assert n + cfg.pad <= L <= (n + cfg.pad) * (1 + 1 / 32) + 1
        assert L >= prev
        prev = L


def test_bucketer_caps_batches_bounds_memory_and_hands_everything_out():
    cfg = arraymel.MelConfig.create()
    b = Bucketer(cfg, batch_samples=100_000, pending_samples=300_000)
    rng = np.random.default_rng(1)
    items = [_Item(np.zeros(int(n))) for n in rng.integers(1000, 60_000, 200)]
    out = []
    for it in items:
        out += b.add(it)
        assert b.pending <= 300_000
    fullest = b.take_fullest()
    assert fullest is not None and all(fullest.samples >= x.samples for x in b._buckets.values())
    out += [fullest] + b.drain()
    assert b.pending == 0 and b.take_fullest() is None
    assert sorted(id(it) for batch in out for it in batch.items) == sorted(id(it) for it in items)
    for batch in out:
        assert all(row_length(it.length, cfg) == batch.length for it in batch.items)
        assert batch.samples <= 100_000 or len(batch.items) == 1
    big = _Item(np.zeros(500_000))
    assert [len(x.items) for x in b.add(big)] == [1]


def test_out_of_memory_splits_the_batch_and_a_file_that_never_fits_goes_to_the_cpu(monkeypatch):
    """The GPU recovery logic, driven by a stand-in device that runs out of memory."""
    from arraymel.corpus.compute import Computer
    from arraymel.corpus.discover import Source

    class OutOfMemoryError(Exception):  # what cupy raises, by name
        pass

    settings = CorpusSettings.create({"num_mel_bins": 32}, device="cpu")
    comp = Computer(settings, device="cuda:0")
    calls = []

    def fake_mel(x, device):
        calls.append((device, x.shape[0]))
        if device.startswith("cuda") and (x.shape[0] > 2 or x.shape[-1] > 40_000):
            raise OutOfMemoryError("Out of memory allocating 1,234 bytes")
        return arraymel.mel_spectrogram(x, num_mel_bins=32, top_db=None)

    monkeypatch.setattr(comp, "_mel", fake_mel)
    monkeypatch.setattr("arraymel.corpus.compute._free_gpu_memory", lambda: None)
    rng = np.random.default_rng(7)
    items = []
    for i, n in enumerate([3000] * 5 + [39_000]):
        it = _Item(rng.standard_normal(n))
        it.source = Source(f"f{i}", "", 0, 0)
        items.append(it)
    small = comp(Batch(length=row_length(3000, settings.mel), items=items[:5]))
    big = comp(Batch(length=row_length(39_000, settings.mel), items=items[5:]))
    assert comp.splits >= 2 and comp.cpu_fallbacks == 1 and ("cpu", 1) in calls
    for c in small + big:
        ref = arraymel.mel_spectrogram(c.item.audio[0], num_mel_bins=32, top_db_scope="example")
        assert c.error is None and np.max(np.abs(c.array - ref)) <= 1e-3


# ------------------------------------------------------------------------------------------------ discovery


def _touch(path, data=b"x"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def test_walk_globs_order_symlinks_and_out_dir(tmp_path):
    root = tmp_path / "in"
    outside = tmp_path / "outside"
    for rel in ("b/2.wav", "b/10.WAV", "a/x.flac", "a/x.flac.txt", "z.ogg", "a/deep/er/y.mp3", "out/old.wav"):
        _touch(str(root / rel))
    _touch(str(outside / "secret.wav"))
    os.symlink(outside / "secret.wav", root / "link_out.wav")  # leads out: not followed
    os.symlink(outside, root / "dir_out")
    os.symlink(root / "z.ogg", root / "a" / "link_in.ogg")  # inside: followed
    os.symlink(root / "a", root / "a" / "deep" / "loop")  # a loop: walked once
    d = walk(str(root), str(root / "out"), ("*.wav", "*.flac", "*.ogg", "*.mp3"), ())
    keys = [s.key for s in d.sources]
    assert keys == sorted(keys)
    assert keys == ["a/deep/er/y.mp3", "a/link_in.ogg", "a/x.flac", "b/10.WAV", "b/2.wav", "z.ogg"]
    assert sorted(d.not_followed) == ["dir_out", "link_out.wav"]
    assert all(s.path.startswith(os.path.realpath(root)) for s in d.sources)
    d = walk(str(root), None, ("a/*",), ("*.txt", "*/deep/*"))
    assert [s.key for s in d.sources] == ["a/link_in.ogg", "a/x.flac"]
    with pytest.raises(DiscoveryError):
        walk(str(root / "missing"), None, ("*",), ())


def test_files_list_normalises_and_refuses_paths_out_of_in_dir(tmp_path):
    root = tmp_path / "in"
    _touch(str(root / "a" / "x.wav"))
    os.makedirs(root / "d")
    assert normalise_key("./a//x.wav") == "a/x.wav" and normalise_key("a/../a/x.wav") == "a/x.wav"
    for bad in ("/etc/passwd", "../x.wav", "a/../../x.wav", ".."):
        assert normalise_key(bad) is None
    d = from_list(str(root), ["a/x.wav", "./a/x.wav", "missing.wav", "d"], None, ())
    assert [s.key for s in d.sources] == ["a/x.wav"]
    assert dict(d.missing) == {"missing.wav": "source file not found (listed in --files)",
                               "d": "not a regular file (listed in --files)"}
    with pytest.raises(DiscoveryError, match="lead out of IN_DIR"):
        from_list(str(root), ["a/x.wav", "../../etc/passwd"], None, ())


# ------------------------------------------------------------------------------------------------ settings


def test_config_hash_is_about_the_numbers():
    base = CorpusSettings.create({"num_mel_bins": 64})
    same = CorpusSettings.create({"num_mel_bins": 64, "max_freq": 8000, "sequence_length": 2048, "sampling_rate": 16000.0,
                                  "dtype": "float32", "ref_power": -1.0}, device="cuda:3", batch_seconds=7, min_seconds=2)
    assert base.config_hash == same.config_hash
    for other in (CorpusSettings.create({"num_mel_bins": 64}, out_dtype="float16"),
                  CorpusSettings.create({"num_mel_bins": 64}, channels="all"),
                  CorpusSettings.create({"num_mel_bins": 64}, resample=False),
                  CorpusSettings.create({"num_mel_bins": 64, "top_db": None}),
                  CorpusSettings.create({"num_mel_bins": 64, "window": np.hanning(2048)})):
        assert other.config_hash != base.config_hash
    assert json.loads(base.canonical_json())["mel"]["top_db_scope"] == "example"


def test_settings_refuse_bad_values_and_force_the_example_scope():
    with pytest.raises(SettingsError, match="fft_length"):
        CorpusSettings.create({"fft_length": 0})
    with pytest.raises(SettingsError, match="out-dtype"):
        CorpusSettings.create({}, out_dtype="int8")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s = CorpusSettings.create({"top_db_scope": "batch"})
    assert s.mel.top_db_scope == "example" and "replaced by 'example'" in str(w[0].message)


def test_config_file_takes_get_config_and_keras_layer_configs(tmp_path):
    m = arraymel.MelSpectrogram(num_mel_bins=80, window=None, top_db=None)
    p = tmp_path / "c.json"
    corpus_key = m.config.replace(top_db_scope="example").key
    p.write_text(json.dumps(m.get_config()))  # no top_db_scope (the default is left out): the corpus's "example"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert CorpusSettings.create(load_config_file(str(p))).mel.key == corpus_key
    p.write_text(json.dumps({**m.get_config(), "top_db_scope": "batch"}))  # replaced, with a note
    with pytest.warns(UserWarning, match="replaced by 'example'"):
        assert CorpusSettings.create(load_config_file(str(p))).mel.key == corpus_key
    keras_fb = arraymel.MelSpectrogram(filterbank="keras")
    p.write_text(json.dumps(keras_fb.get_config()))
    settings = CorpusSettings.create(load_config_file(str(p)))
    assert settings.mel.filterbank == "keras" and settings.mel_config_dict()["filterbank"] == "keras"
    keras_like = {**m.get_config(), "name": "mel_spectrogram", "trainable": True,
                  "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}}}
    p.write_text(json.dumps(keras_like))
    assert load_config_file(str(p))["dtype"] == "float32"
    p.write_text("[1, 2]")
    with pytest.raises(SettingsError, match="JSON object"):
        load_config_file(str(p))
    with pytest.raises(SettingsError, match="cannot read"):
        load_config_file(str(tmp_path / "none.json"))


# ------------------------------------------------------------------------------------------------ storage


def test_writer_is_atomic_and_stays_inside_out_dir(tmp_path):
    out = tmp_path / "out"
    w = Writer(str(out))
    path, dirs = w.write("a/b/c.wav", b"data")
    assert path == os.path.join(os.path.realpath(out), "a", "b", "c.wav.npy") and open(path, "rb").read() == b"data"
    assert os.path.join(os.path.realpath(out), "a", "b") in dirs
    assert not [n for n in os.listdir(out / "a" / "b") if TMP_MARK in n]
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", out / "evil")
    with pytest.raises(OutputError, match="outside OUT_DIR|inside OUT_DIR"):
        w.write("evil/x.wav", b"data")
    assert os.listdir(tmp_path / "elsewhere") == []
    with pytest.raises(OutputError):
        w.path("../x.wav")
    assert w.remove("a/b/c.wav") and not os.path.exists(path) and not w.remove("a/b/c.wav")


def test_remove_leftovers_takes_only_our_temporary_files(tmp_path):
    ours = tmp_path / "d" / (".x.wav.npy" + TMP_MARK + "ab" * 16)
    theirs = [tmp_path / "d" / "x.wav.npy", tmp_path / ("x" + TMP_MARK + "ab" * 16), tmp_path / (".y" + TMP_MARK + "zz")]
    for p in [ours, *theirs]:
        _touch(str(p))
    assert remove_leftovers(str(tmp_path)) == [os.path.join("d", ours.name)]
    assert all(p.exists() for p in theirs)


# ------------------------------------------------------------------------------------------------ command line


def _parser() -> argparse.ArgumentParser:
    from arraymel.corpus import cli

    top = argparse.ArgumentParser(prog="arraymel")
    sub = top.add_subparsers(dest="command")
    cli.add_parser(sub)
    return top


def test_help_documents_every_option_and_both_forms():
    top = _parser()
    corpus = top._subparsers._group_actions[0].choices["corpus"]
    text = corpus.format_help()
    for action in corpus._actions:
        for opt in action.option_strings:
            assert opt in text
        if action.option_strings and action.dest != "help":
            assert action.help and len(action.help) > 10, action.dest
    assert "arraymel corpus IN_DIR OUT_DIR [options]" in text and "arraymel corpus status OUT_DIR [--json]" in text
    for word in ("exit status", "manifest.sqlite", "--force", "resumes by default", "dask"):
        assert word in text


def test_status_form_and_run_form_both_parse():
    top = _parser()
    a = top.parse_args(["corpus", "status", "/out", "--json"])
    assert (a.in_dir, a.out_dir, a.json) == ("status", "/out", True)
    a = top.parse_args(["corpus", "/in", "/out", "--top-db", "none", "--max-freq", "7600", "--no-power-to-db"])
    assert a.in_dir == "/in" and repr(a.top_db) == "none" and a.max_freq == 7600.0 and a.power_to_db is False
    with pytest.raises(SystemExit) as e:
        top.parse_args(["corpus", "/in", "/out", "--window", "kaiser"])
    assert e.value.code == 1
