"""``arraymel bench``: compare devices and peer libraries on one workload, side by side.

Registered by :mod:`arraymel.cli` through :func:`add_parser`. Everything heavy (the peers'
libraries, rich, matplotlib, jsonschema) is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

DESCRIPTION = """\
Time arraymel and its peers (librosa, Keras, torchaudio, torch.stft, a naive CuPy pipeline) on
the same input, on each device, and report the median time, audio-hours per second, the speed
relative to arraymel on that device, peak memory, and the largest dB difference to arraymel.
Peers that are not installed or cannot run on a device are listed as skipped, with the reason.
With no arguments: every installed peer on every available device, Keras defaults, batches of
1 and 16 clips of 10 s on the CPU (1 and 512 on a GPU).
"""

EPILOG = """\
examples:
  arraymel bench
  arraymel bench --config speech --batch 1 16 --json bench.json --plot bench.png
  arraymel bench --device cuda:0 --peers torchaudio naive-cupy --batch 512
  arraymel bench --config my_layer.json --seconds 30 --repeat 20
  arraymel bench --config whisper kaldi --peers preset-reference --batch 16
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from arraymel.bench.peers import PEERS  # light: NumPy only
    from arraymel.bench.workloads import CONFIGS, DEFAULT_SECONDS
    from arraymel.presets import PRESETS

    p = subparsers.add_parser(
        "bench", help="benchmark devices and peer libraries side by side", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--device", nargs="+", metavar="DEV", default=None,
                   help="devices: cpu, cuda, cuda:N (default: the CPU and every CUDA device found)")
    p.add_argument("--peers", nargs="+", metavar="PEER", default=None, choices=list(PEERS),
                   help=f"libraries to compare (default: all): {', '.join(PEERS)}; arraymel always runs, as the reference")
    p.add_argument("--config", nargs="+", metavar="CFG", default=["keras"],
                   help=f"named configuration ({', '.join(CONFIGS)}), a preset ({', '.join(PRESETS)}: arraymel against "
                   "the preset's reference library, docs/presets.md) or a JSON file of MelSpectrogram parameters "
                        "(default: keras)")
    p.add_argument("--batch", nargs="+", type=_positive_int, metavar="N", default=None,
                   help="batch sizes, clips per call (default: 1 16 on a CPU, 1 512 on a GPU)")
    p.add_argument("--seconds", type=_positive_float, default=DEFAULT_SECONDS, help="clip length in seconds (default: 10)")
    p.add_argument("--sampling-rate", type=_positive_float, default=None,
                   help="override the configuration's sampling rate (Hz)")
    p.add_argument("--repeat", type=_positive_int, default=None,
                   help="timed rounds per row, one call of each library per round "
                   "(default: adaptive, >= 11 and about --budget seconds for the slowest)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls before timing (default: 1)")
    p.add_argument("--budget", type=_positive_float, default=1.0,
                   help="seconds of timed calls per row when --repeat is not given (default: 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the test signal (default: 0)")
    p.add_argument("--no-memory", action="store_true", help="skip the extra call that measures peak memory")
    p.add_argument("--json", metavar="OUT.json", default=None, help="write the full report as JSON (schema arraymel-bench/1)")
    p.add_argument("--plot", metavar="OUT.png", default=None, help="write a bar chart of audio-hours per second")
    p.add_argument("--markdown", metavar="OUT.md", default=None, help="write the tables as Markdown")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=run)
    return p


def _positive_int(s: str) -> int:
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"{s!r}: must be an integer >= 1")
    return v


def _positive_float(s: str) -> float:
    v = float(s)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"{s!r}: must be a number > 0")
    return v


#: (attribute, flag) of every option, in the order ``command_line`` writes them.
_OPTIONS = (
    ("device", "--device"), ("peers", "--peers"), ("config", "--config"), ("batch", "--batch"),
    ("seconds", "--seconds"), ("sampling_rate", "--sampling-rate"), ("repeat", "--repeat"), ("warmup", "--warmup"),
    ("budget", "--budget"), ("seed", "--seed"), ("no_memory", "--no-memory"), ("json", "--json"),
    ("plot", "--plot"), ("markdown", "--markdown"),
)
_DEFAULTS = {"config": ["keras"], "seconds": 10.0, "warmup": 1, "budget": 1.0, "seed": 0, "no_memory": False}


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces ``args`` (options at their defaults left out)."""
    words = ["arraymel", "bench"]
    for attr, flag in _OPTIONS:
        v = getattr(args, attr, None)
        if v is None or v == _DEFAULTS.get(attr):
            continue
        if v is True:
            words.append(flag)
        elif isinstance(v, list):
            words += [flag, *(f"{x:g}" if isinstance(x, float) else str(x) for x in v)]
        else:
            words += [flag, f"{v:g}" if isinstance(v, float) else str(v)]
    return shlex.join(words)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark described by ``args``; 0 on success, 1 when arraymel itself failed, 2 on bad input."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "numpy")  # before any peer imports Keras
    from arraymel.bench import report
    from arraymel.bench.run import run_benchmark
    from arraymel.bench.workloads import resolve_config

    for c in args.config:
        try:
            resolve_config(c)
        except (ValueError, OSError) as e:
            print(f"arraymel bench: {e}", file=sys.stderr)
            return 2

    def progress(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    command = command_line(args)
    try:
        doc = run_benchmark(
            device_specs=args.device, peer_names=args.peers, configs=args.config, batches=args.batch,
            seconds=args.seconds, sampling_rate=args.sampling_rate, repeat=args.repeat, warmup=max(0, args.warmup),
            budget_s=args.budget, seed=args.seed, measure_memory=not args.no_memory, command=command,
            progress=progress,
        )
    except ValueError as e:
        print(f"arraymel bench: {e}", file=sys.stderr)
        return 2

    report.print_table(doc)
    if args.json:
        report.write_json(doc, args.json)
        progress(f"wrote {args.json}")
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(report.format_markdown(doc))
        progress(f"wrote {args.markdown}")
    if args.plot:
        try:
            report.plot(doc, args.plot)
            progress(f"wrote {args.plot}")
        except ImportError as e:
            print(f"arraymel bench: --plot needs matplotlib (pip install 'arraymel[plot]'): {e}", file=sys.stderr)
            return 1
        except ValueError as e:
            print(f"arraymel bench: --plot: {e}", file=sys.stderr)
    ran_reference = any(r["library"] == "arraymel" for r in doc["results"])
    reference_failed = any(s["library"] == "arraymel" and s["status"] == "error" for s in doc["skipped"])
    return 1 if (reference_failed or not ran_reference) else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m arraymel.bench.cli ...``: the subcommand on its own."""
    parser = argparse.ArgumentParser(prog="arraymel")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "bench":
        argv = ["bench", *argv]
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
