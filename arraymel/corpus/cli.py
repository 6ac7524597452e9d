"""The ``arraymel corpus`` command line (registered by :mod:`arraymel.cli`).

Two forms share one parser: ``arraymel corpus IN_DIR OUT_DIR [options]`` runs, and
``arraymel corpus status OUT_DIR [--json]`` reports (the literal word ``status`` as the first
positional; an input directory called ``status`` is written ``./status``). Usage errors exit
with status 1, as the command's contract says (argparse's own default would be 2, which means
"some files failed" here).
"""

from __future__ import annotations

import argparse
import sys
import types
import warnings

USAGE = """arraymel corpus IN_DIR OUT_DIR [options]
       arraymel corpus status OUT_DIR [--json]"""

DESCRIPTION = """\
Compute the mel spectrogram of every audio file under IN_DIR into OUT_DIR, batched, resumable
and crash-safe. IN_DIR/<rel> becomes OUT_DIR/<rel>.npy (a/b.wav -> a/b.wav.npy): a float32 (or
--out-dtype float16) array of shape (num_mel_bins, frames), or (channels, num_mel_bins, frames)
with --channels all, equal to arraymel.mel_spectrogram(file, top_db_scope="example") on that
file alone. OUT_DIR/manifest.sqlite records every file (status, reason of a failure, source
size/mtime/rate/channels/samples, frames, output SHA-256, config hash, versions).

A run resumes by default: a file whose manifest row is ok, whose source size and mtime are
unchanged, whose config hash matches and whose output still has the recorded SHA-256 is
skipped. A different configuration on an existing OUT_DIR is refused unless --force.

`arraymel corpus status OUT_DIR [--json]` prints the manifest's counts and failures
(exit status 0: no failed file, 2: some failed, 1: no readable manifest)."""

EPILOG = """\
exit status:
  0  every file is ok (computed now or skipped as already done)
  2  the run finished but some files failed (see the summary or `arraymel corpus status`)
  1  the run could not proceed: bad arguments, unwritable OUT_DIR, a lock held by another
     run, a configuration mismatch without --force, a damaged manifest, more than
     --max-failures failures, OUT_DIR or the manifest that cannot be written (a full disk,
     an I/O error), or an interruption (SIGINT/SIGTERM); one line says why and where

examples:
  arraymel corpus /data/audio /data/mel --num-mel-bins 80 --fft-length 400 --sequence-stride 160
  arraymel corpus /data/audio /data/mel --config mel.json --device cuda:0 --out-dtype float16
  arraymel corpus /data/audio /data/mel --dask local:4
  arraymel corpus /data/audio /data/mel --dask tcp://scheduler:8786
  arraymel corpus /data/audio /data/whisper --preset whisper --preset-options '{"n_mels": 128}'
  arraymel corpus status /data/mel --json

See docs/corpus.md for the durability rules, batching and Dask (dask-cuda) set-ups."""


class _NoneToken:
    """Marks an option given as 'none' (explicitly None), distinct from 'not given'."""

    def __repr__(self) -> str:
        return "none"


NONE = _NoneToken()


def _float_or_none(text: str):
    if text.strip().lower() in ("none", "null"):
        return NONE
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


def _int_or_none(text: str):
    if text.strip().lower() in ("none", "null"):
        return NONE
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'none', got {text!r}") from None


def _window(text: str):
    t = text.strip().lower()
    if t in ("none", "null"):
        return NONE
    if t in ("hann", "hamming"):
        return t
    raise argparse.ArgumentTypeError(f"expected hann, hamming or none, got {text!r} (an array window: use --config)")


def _dtype(text: str) -> str:
    if text not in ("float32", "float64"):
        raise argparse.ArgumentTypeError(f"expected float32 or float64, got {text!r}")
    return text


def _json_object(text: str) -> dict:
    import json

    try:
        v = json.loads(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({e})") from None
    if not isinstance(v, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return v


def _number(kind: type, minimum: float, *, inclusive: bool = True):
    """An argparse type: ``kind`` (int or float), finite, ``>= minimum`` (or ``> minimum``)."""
    noun = "an integer" if kind is int else "a number"
    rule = f"{'>=' if inclusive else '>'} {minimum:g}"

    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if v != v or v in (float("inf"), float("-inf")) or (v < minimum if inclusive else v <= minimum):
            raise argparse.ArgumentTypeError(f"expected {noun} {rule}, got {text}")
        return v

    return parse


_positive_int = _number(int, 1)
_nonneg_int = _number(int, 0)
_nonneg_float = _number(float, 0.0)
_positive_float = _number(float, 0.0, inclusive=False)


#: (flag, dest, type, help) of the mel parameters; dest is the library's keyword.
MEL_FLAGS = [
    ("--fft-length", "fft_length", int, "FFT size in samples (default 2048)"),
    ("--sequence-stride", "sequence_stride", int, "hop between frames in samples (default 512)"),
    ("--sequence-length", "sequence_length", _int_or_none, "window length <= fft_length, centred in the frame "
                                                           "(default none: fft_length)"),
    ("--window", "window", _window, "hann, hamming or none (default hann; an array window: --config)"),
    ("--sampling-rate", "sampling_rate", float, "the rate the audio is resampled to and the mel scale assumes, Hz "
                                                "(default 16000)"),
    ("--num-mel-bins", "num_mel_bins", int, "number of mel bands (default 128)"),
    ("--min-freq", "min_freq", float, "lowest band edge, Hz (default 20)"),
    ("--max-freq", "max_freq", _float_or_none, "highest band edge, Hz (default none: int(sampling_rate / 2))"),
    ("--top-db", "top_db", _float_or_none, "clip each file (each channel with --channels all) at this many dB below "
                                           "its own maximum; none: no clipping (default 80)"),
    ("--mag-exp", "mag_exp", float, "exponent of the magnitude: 2 power, 1 magnitude (default 2)"),
    ("--min-power", "min_power", float, "floor of the power before the logarithm (default 1e-10)"),
    ("--ref-power", "ref_power", float, "reference power of 0 dB (default 1)"),
    ("--dtype", "dtype", _dtype, "compute dtype: float32 or float64 (default float32; the output dtype is --out-dtype)"),
]


def _strict(parser: argparse.ArgumentParser) -> None:
    """Usage errors exit with status 1 (the corpus contract), and unknown options are errors here."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")

    parser.error = types.MethodType(error, parser)
    original = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):
        ns, extras = original(args, namespace)
        if extras:
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        return ns, []

    parser.parse_known_args = parse_known_args


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "corpus", usage=USAGE, description=DESCRIPTION, epilog=EPILOG,
        help="preprocess a tree of audio files into mel features (resumable, crash-safe, Dask)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("in_dir", metavar="IN_DIR", help="the audio tree to read (or the word 'status': report on OUT_DIR)")
    p.add_argument("out_dir", metavar="OUT_DIR", help="where the .npy files and manifest.sqlite go (created if missing)")

    g = p.add_argument_group("selecting files")
    g.add_argument("--include", action="append", metavar="GLOB",
                   help="take files matching GLOB (repeatable); a GLOB without '/' matches the file name, one with '/' the "
                        "path relative to IN_DIR; case-insensitive (default: *.wav *.flac *.ogg *.oga, and *.mp3 where "
                        "libsndfile decodes MPEG)")
    g.add_argument("--exclude", action="append", metavar="GLOB", help="leave out files matching GLOB (repeatable)")
    g.add_argument("--files", metavar="LIST",
                   help="process exactly the files listed in LIST, one path relative to IN_DIR a line ('-': standard "
                        "input); --include/--exclude apply only when given; a listed file that is missing is recorded "
                        "as failed")

    g = p.add_argument_group("decoding")
    g.add_argument("--channels", choices=("mean", "first", "all"), default="mean",
                   help="mean: average the channels; first: the first channel; all: one spectrogram per channel, output "
                        "(channels, num_mel_bins, frames) (default mean)")
    g.add_argument("--no-resample", action="store_true",
                   help="do not resample: a file whose rate differs from --sampling-rate fails (default: resample with "
                        "soxr, quality HQ)")
    g.add_argument("--min-seconds", type=_nonneg_float, default=0.0, metavar="S",
                   help="files shorter than S seconds fail as too short (default 0: any file with a sample)")
    g.add_argument("--workers", type=_positive_int, metavar="N",
                   help="parallel workers (default: the CPUs available): on the CPU, N processes that each decode and "
                        "compute whole chunks of files; on a GPU with --engine threads, N threads decoding ahead of it "
                        "(the default engine there takes --decode-workers); with --dask, decoding threads per task on "
                        "GPU workers")

    g.add_argument("--decode-workers", type=_positive_int, metavar="N",
                   help="on a GPU (or --device stand-in): N decode processes feeding it through shared memory "
                        "(default: the CPUs available less one)")
    g.add_argument("--engine", choices=("auto", "processes", "decoders", "threads"), default="auto",
                   help="auto (default): processes on the CPU, decoders on a GPU; processes: worker processes that "
                        "decode and compute whole chunks (CPU only); decoders: decode processes feeding one device; "
                        "threads: decoding threads feeding one device in this process")

    g = p.add_argument_group("mel configuration (as arraymel.mel_spectrogram; top_db is always per file)")
    g.add_argument("--config", metavar="FILE",
                   help="a JSON file with MelSpectrogram.get_config()'s dict (Keras layer keys are ignored); the flags "
                        "below override its values")
    for flag, dest, typ, text in MEL_FLAGS:
        g.add_argument(flag, dest=dest, type=typ, default=None, metavar="V", help=text)
    g.add_argument("--preset", choices=("whisper", "librosa", "torchaudio", "kaldi", "nemo"), default=None,
                   help="a preset's features instead (arraymel.presets, docs/presets.md): no --config or mel option then")
    g.add_argument("--preset-options", metavar="JSON", type=_json_object, default=None,
                   help='the preset\'s arguments as a JSON object, e.g. \'{"n_mels": 128}\'')
    g.add_argument("--power-to-db", dest="power_to_db", action=argparse.BooleanOptionalAction, default=None,
                   help="decibels (default) or, with --no-power-to-db, the mel power itself")

    g = p.add_argument_group("output")
    g.add_argument("--out-dtype", choices=("float32", "float16"), default="float32",
                   help="dtype of the .npy files (default float32); float16 halves the size, about 0.03 dB resolution "
                        "near 60 dB, and a file whose values exceed its range fails")
    # validated by CorpusSettings (one line, status 1, before anything is written), not by argparse choices
    g.add_argument("--format", dest="output_format", default="npy", metavar="FORMAT",
                   help="npy (default: one .npy per file), shar (Lhotse Shar shards under OUT_DIR/shar: "
                        "CutSet.from_shar, also WebDataset tars) or kaldi (feats.NNNNNN.ark + feats.scp under "
                        "OUT_DIR/kaldi, for kaldiio/ESPnet/Kaldi)")
    g.add_argument("--shard-size", default="1000", metavar="N",
                   help="files per shard with --format shar|kaldi (default 1000); shards are cut from the sorted file "
                        "list, so a resumed run writes the same shards")
    g.add_argument("--shar-compression", default="npy", metavar="KIND",
                   help="how --format shar stores each matrix: npy (default; also readable by webdataset) or lilcom "
                        "(Lhotse's lossy compression, about 2.5x smaller, within 0.016 dB; needs the lilcom extra)")
    g.add_argument("--nemo-manifest", action="store_true",
                   help="with --format npy: also write OUT_DIR/nemo_manifest.jsonl (feature_filepath, duration, "
                        "audio_filepath), the manifest NeMo's feature datasets read")

    g = p.add_argument_group("batching and device")
    g.add_argument("--batch-seconds", type=_positive_float, metavar="S",
                   help="cap on the (padded) audio per batch, in seconds at --sampling-rate (default 300 on the CPU, "
                        "3600 on a GPU); a longer file is a batch by itself")
    g.add_argument("--memory-per-worker", type=_number(float, 64), default=384.0, metavar="MB",
                   help="memory one worker may use, in MB (default 384): a file whose decoded audio takes more than an "
                        "eighth of it is decoded, resampled and computed in blocks, whatever its length, and batches are "
                        "capped to fit")
    g.add_argument("--device", default="auto", metavar="DEV",
                   help="auto (the first GPU if CuPy sees one, else the CPU), cpu, cuda or cuda:N (default auto); on a "
                        "GPU out-of-memory error the batch is split and retried; stand-in[:RATE]: no device, a batch "
                        "takes the time a GPU computing RATE audio-hours/s (default 1400) would, outputs zero-filled "
                        "(measures the engine, not the features)")

    g = p.add_argument_group("resuming and failures")
    g.add_argument("--force", action="store_true",
                   help="recompute every file, and accept a configuration different from OUT_DIR's")
    g.add_argument("--verify", choices=("sha256", "size"), default="sha256",
                   help="how a done file's output is checked before it is skipped: its SHA-256 (default) or only that "
                        "it exists")
    g.add_argument("--max-failures", type=_nonneg_int, metavar="N",
                   help="stop the run (status 1) once more than N files have failed (default: never stop)")
    g.add_argument("--prune", action="store_true",
                   help="remove the outputs and manifest rows of sources that no longer exist in IN_DIR (orphaned "
                        "outputs, which `arraymel corpus status` reports)")

    g = p.add_argument_group("scale-out")
    g.add_argument("--dask", metavar="ADDRESS",
                   help="run the batches on Dask workers: the address of a running dask.distributed scheduler "
                        "(e.g. tcp://host:8786, also a dask-cuda cluster: one worker per GPU), or local:N for a local "
                        "cluster of N worker processes; workers read IN_DIR and write OUT_DIR at the same paths, and "
                        "only this process writes the manifest")

    g = p.add_argument_group("reporting")
    g.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors (no progress, no summary)")
    g.add_argument("--progress-interval", type=_positive_float, default=30.0, metavar="S",
                   help="seconds between progress lines when standard error is not a terminal (default 30); on a "
                        "terminal a progress bar is shown")
    g.add_argument("--json", action="store_true", help="status only: print the report as JSON")
    g.add_argument("--debug", action="store_true",
                   help="show the traceback of an unexpected error (otherwise one line says what went wrong)")
    _strict(p)
    p.set_defaults(func=main, _corpus_parser=p)
    return p


def _run_options_given(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    given = []
    for action in parser._actions:
        if action.dest in ("help", "in_dir", "out_dir", "json", "debug") or not action.option_strings:
            continue
        if getattr(args, action.dest, None) != action.default:
            given.append(action.option_strings[0])
    return given


def main(args: argparse.Namespace) -> int:
    parser = args._corpus_parser
    if args.in_dir == "status":
        extra = _run_options_given(args, parser)
        if extra:
            parser.error(f"status takes only OUT_DIR, --json and --debug; not {', '.join(extra)}")
        from arraymel.corpus.status import status

        return status(args.out_dir, as_json=args.json)
    if args.json:
        parser.error("--json belongs to `arraymel corpus status OUT_DIR --json`")
    return run_from_args(args)


def run_from_args(args: argparse.Namespace) -> int:
    from arraymel.corpus.runner import EXIT_FATAL, RunOptions, run
    from arraymel.corpus.settings import CorpusSettings, SettingsError, load_config_file

    try:
        try:
            shard_size = int(args.shard_size)
        except ValueError:
            raise SettingsError(f"--shard-size {args.shard_size!r}: must be a whole number of files >= 1.") from None
        if args.nemo_manifest and args.output_format != "npy":
            raise SettingsError(f"--nemo-manifest: only with --format npy (given --format {args.output_format}); "
                                "NeMo's feature datasets read one .npy per file.")
        params = load_config_file(args.config) if args.config else {}
        for _flag, dest, _typ, _text in MEL_FLAGS:
            v = getattr(args, dest)
            if v is not None:
                params[dest] = None if v is NONE else v
        if args.power_to_db is not None:
            params["power_to_db"] = args.power_to_db
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            settings = CorpusSettings.create(
                params, out_dtype=args.out_dtype, channels=args.channels, resample=not args.no_resample,
                min_seconds=args.min_seconds, device=args.device, batch_seconds=args.batch_seconds,
                memory_per_worker=args.memory_per_worker, preset=args.preset, preset_options=args.preset_options,
                output_format=args.output_format, shard_size=shard_size, shar_compression=args.shar_compression,
            )
        for w in caught:
            if not args.quiet:
                print(f"arraymel corpus: note: {w.message}", file=sys.stderr)
    except SettingsError as e:
        print(f"arraymel corpus: error: {e}", file=sys.stderr)
        return EXIT_FATAL
    opts = RunOptions(
        in_dir=args.in_dir, out_dir=args.out_dir, settings=settings,
        include=tuple(args.include) if args.include else None, exclude=tuple(args.exclude or ()),
        files_list=args.files, workers=args.workers, engine=args.engine, decode_workers=args.decode_workers,
        force=args.force, verify=args.verify,
        max_failures=args.max_failures, dask=args.dask, prune=args.prune, debug=args.debug, quiet=args.quiet,
        progress_interval=args.progress_interval, nemo_manifest=args.nemo_manifest,
        options={k: v for k, v in vars(args).items() if not k.startswith("_") and k != "func"},
    )
    return run(opts)
