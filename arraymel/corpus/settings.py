"""What a corpus run computes: the mel configuration, the output options, and their hash.

The hash (``config_hash``) identifies everything that changes the numbers in an output file:
the resolved mel parameters (defaults filled in, so ``max_freq=None`` and ``max_freq=8000`` at
16 kHz hash alike), the output dtype, the channel mode and the resampling settings. It is the
SHA-256 of the canonical JSON (sorted keys, no spaces, shortest float repr) of those values.
Options that only decide *which* files are processed or *how fast* (globs, ``--min-seconds``,
``--device``, ``--batch-seconds``, worker counts) are not part of it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import warnings
from typing import Any

import numpy as np

from arraymel import MelConfig

#: The defaults of every mel parameter, from the public :class:`arraymel.MelConfig`: the Keras layer's keys
#: (those of ``keras_config()``) and arraymel's extensions (the rest).
_DEFAULT_MEL = MelConfig.create()
KERAS_DEFAULTS: dict[str, Any] = {k: _DEFAULT_MEL.given[k] for k in _DEFAULT_MEL.keras_config()}
EXTENSION_DEFAULTS: dict[str, Any] = {k: v for k, v in _DEFAULT_MEL.given.items() if k not in KERAS_DEFAULTS}

#: Bumped when the meaning of an output file changes (layout, padding rule, ...).
FORMAT_VERSION = 1
#: ``--format``: one ``.npy`` per file, or shards that a training stack reads directly (arraymel/corpus/formats/).
FORMATS = ("npy", "shar", "kaldi")
#: ``--shard-size``'s default: files per shard. 1,000 utterances of a few seconds make shards of tens of MB
#: (sequential reads of that size saturate network storage), the count Lhotse's own Shar writer uses, and
#: a bound on what a run holds in memory while a shard waits for its last file (docs/corpus.md).
DEFAULT_SHARD_SIZE = 1000
SHAR_COMPRESSIONS = ("npy", "lilcom")
OUT_DTYPES = ("float32", "float16")
CHANNEL_MODES = ("mean", "first", "all")
#: soxr's quality recipe used whenever a file is resampled.
RESAMPLE_QUALITY = "HQ"
#: Keras layer bookkeeping keys that may appear in a ``get_config()`` dict and mean nothing here.
LAYER_KEYS = ("name", "trainable", "dtype_policy", "autocast")
MEL_KEYS = (*KERAS_DEFAULTS, *EXTENSION_DEFAULTS)
#: --memory-per-worker's default (MB)
DEFAULT_MEMORY_MB = 384.0
#: the least --memory-per-worker that leaves room for the worker itself (the interpreter and the libraries)
MIN_MEMORY_MB = 64.0


class SettingsError(ValueError):
    """A configuration that cannot be used; the message says which value and why."""


def load_config_file(path: str) -> dict[str, Any]:
    """The mel parameters in a ``--config`` JSON file (the dict of ``MelSpectrogram.get_config()``)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise SettingsError(f"--config {path}: cannot read it: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise SettingsError(f"--config {path}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"--config {path}: expected a JSON object (the dict of MelSpectrogram.get_config()), "
                            f"got {type(data).__name__}.")
    params = {k: v for k, v in data.items() if k not in LAYER_KEYS}
    dtype = params.get("dtype")
    if isinstance(dtype, dict):  # a Keras DTypePolicy: {"class_name": "DTypePolicy", "config": {"name": "float32"}}
        name = (dtype.get("config") or {}).get("name")
        if name not in ("float32", "float64"):
            raise SettingsError(f"--config {path}: dtype policy {name!r} is not supported; use 'float32' or 'float64'.")
        params["dtype"] = name
    unknown = sorted(set(params) - set(MEL_KEYS))
    if unknown:
        raise SettingsError(f"--config {path}: unknown key(s) {unknown}; the keys are {', '.join(MEL_KEYS)}.")
    return params


def _canonical_float(v: Any) -> Any:
    return None if v is None else float(v)


def canonical_mel(cfg: MelConfig) -> dict[str, Any]:
    """The resolved parameters of ``cfg`` as plain JSON values (what the numbers depend on)."""
    w = cfg.window
    if w is not None and not isinstance(w, str):
        w = [float(v) for v in np.asarray(w, dtype=np.float64).ravel()]
    return {
        "fft_length": cfg.fft_length,
        "sequence_stride": cfg.sequence_stride,
        "sequence_length": cfg.sequence_length,
        "window": w,
        "sampling_rate": float(cfg.sampling_rate),
        "num_mel_bins": cfg.num_mel_bins,
        "min_freq": float(cfg.min_freq),
        "max_freq": float(cfg.max_freq),
        "power_to_db": bool(cfg.power_to_db),
        "top_db": _canonical_float(cfg.top_db),
        "mag_exp": float(cfg.mag_exp),
        "min_power": float(cfg.min_power),
        "ref_power": float(cfg.ref_power),
        "top_db_scope": cfg.top_db_scope,
        "dtype": cfg.dtype or "float32",
        # the other extensions only when not the default, so that the manifests written before they existed
        # still match (and an extension added later is hashed without a change here)
        **_changed_extensions(cfg),
    }


def _changed_extensions(cfg: MelConfig) -> dict[str, Any]:
    """The extensions beyond ``top_db_scope`` and ``dtype`` (always written) that differ from their default."""
    return {k: getattr(cfg, k) for k, default in EXTENSION_DEFAULTS.items()
            if k not in ("top_db_scope", "dtype") and getattr(cfg, k) != default}


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


@dataclasses.dataclass(frozen=True)
class CorpusSettings:
    """Everything a worker needs to turn one decoded file into its output array.

    ``mel_params`` are keyword arguments of :func:`arraymel.mel_spectrogram` (``top_db_scope`` is
    always ``"example"``: a file's features never depend on its batch).
    """

    mel_params: dict
    out_dtype: str = "float32"
    channels: str = "mean"
    resample: bool = True
    min_seconds: float = 0.0
    device: str = "auto"
    batch_seconds: float | None = None
    #: the memory one worker may use, in MB (--memory-per-worker): decides which files stream (stream.py),
    #: the block sizes and the batch caps on the CPU
    memory_per_worker: float = DEFAULT_MEMORY_MB
    #: ``arraymel corpus --preset NAME``: the preset (arraymel.presets) and its arguments; ``mel_params`` are then
    #: its pipeline's parameters
    preset: str | None = None
    preset_options: dict | None = None
    #: ``--format``, ``--shard-size``, ``--shar-compression``: how the features are stored (part of the hash
    #: for the sharded formats: switching on an existing OUT_DIR is a configuration change)
    output_format: str = "npy"
    shard_size: int = DEFAULT_SHARD_SIZE
    shar_compression: str = "npy"

    @classmethod
    def create(cls, mel_params: dict[str, Any], **kwargs: Any) -> CorpusSettings:
        if kwargs.get("preset_options") is not None and kwargs.get("preset") is None:
            raise SettingsError("--preset-options needs --preset NAME.")
        if kwargs.get("preset") is not None:
            if mel_params:
                raise SettingsError(f"--preset {kwargs['preset']} fixes the mel configuration: it takes no --config or "
                                    f"mel option (given: {', '.join(sorted(mel_params))}); use --preset-options.")
            import arraymel.presets  # noqa: PLC0415

            try:
                preset = arraymel.presets.get(kwargs["preset"], **(kwargs.get("preset_options") or {}))
            except (TypeError, ValueError) as e:
                raise SettingsError(f"--preset {kwargs['preset']}: {e}") from None
            if preset.options.get("pad_or_trim"):
                raise SettingsError(f"--preset {kwargs['preset']} with pad_or_trim=true is not supported by arraymel "
                                    "corpus: it makes every file 30 s long, and the corpus computes each file at its "
                                    "own length; leave pad_or_trim out (the features of a file shorter than 30 s are "
                                    "then its own frames, without the zero tail).")
            if getattr(preset, "corpus_unsupported", None):  # a preset that frames or resizes the signal itself
                raise SettingsError(f"--preset {kwargs['preset']}: {preset.corpus_unsupported}.")
            mel_params = {**preset.config.given, "top_db_scope": "example"}
        params = dict(mel_params)
        scope = params.get("top_db_scope", "example")
        if scope != "example":
            warnings.warn(
                f"top_db_scope={scope!r} in the configuration is replaced by 'example': a corpus run clips each "
                "file at top_db below its own maximum, so that a file's features never depend on its batch.",
                stacklevel=2,
            )
        params["top_db_scope"] = "example"
        try:
            MelConfig.create(**params)
        except (TypeError, ValueError) as e:
            raise SettingsError(f"mel configuration: {e}") from None
        s = cls(mel_params=params, **kwargs)
        if s.out_dtype not in OUT_DTYPES:
            raise SettingsError(f"--out-dtype {s.out_dtype!r}: must be one of {', '.join(OUT_DTYPES)}.")
        if s.channels not in CHANNEL_MODES:
            raise SettingsError(f"--channels {s.channels!r}: must be one of {', '.join(CHANNEL_MODES)}.")
        if not (math.isfinite(s.min_seconds) and s.min_seconds >= 0):
            raise SettingsError(f"--min-seconds {s.min_seconds!r}: must be a finite number >= 0.")
        if s.batch_seconds is not None and not (math.isfinite(s.batch_seconds) and s.batch_seconds > 0):
            raise SettingsError(f"--batch-seconds {s.batch_seconds!r}: must be a finite number > 0.")
        if not (math.isfinite(s.memory_per_worker) and s.memory_per_worker >= MIN_MEMORY_MB):
            raise SettingsError(f"--memory-per-worker {s.memory_per_worker!r}: must be a number of MB >= {MIN_MEMORY_MB:g}.")
        s._check_format()
        return s

    def _check_format(self) -> None:
        if self.output_format not in FORMATS:
            raise SettingsError(f"--format {self.output_format!r}: must be one of {', '.join(FORMATS)}.")
        if isinstance(self.shard_size, bool) or not isinstance(self.shard_size, int) or self.shard_size < 1:
            raise SettingsError(f"--shard-size {self.shard_size!r}: must be a whole number of files >= 1.")
        if self.shar_compression not in SHAR_COMPRESSIONS:
            raise SettingsError(f"--shar-compression {self.shar_compression!r}: must be one of "
                                f"{', '.join(SHAR_COMPRESSIONS)}.")
        if self.shar_compression != "npy" and self.output_format != "shar":
            raise SettingsError(f"--shar-compression {self.shar_compression}: only with --format shar "
                                f"(given --format {self.output_format}).")
        if self.output_format != "npy" and self.channels == "all":
            raise SettingsError(f"--channels all with --format {self.output_format}: a {self.output_format} shard holds "
                                "one (frames, features) matrix per file; use --channels mean or first, or --format npy.")
        if self.output_format == "kaldi" and self.out_dtype != "float32":
            raise SettingsError(f"--out-dtype {self.out_dtype} with --format kaldi: Kaldi's binary matrices are float32 "
                                "('FM') or float64; use --out-dtype float32.")
        if self.shar_compression == "lilcom":
            try:
                import lilcom  # noqa: F401, PLC0415
            except ImportError:
                raise SettingsError("--shar-compression lilcom needs the lilcom package: "
                                    "pip install 'arraymel[lilcom]'.") from None

    @property
    def sharded(self) -> bool:
        """True for the formats that write shards (``shar``, ``kaldi``) rather than one file per source."""
        return self.output_format != "npy"

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_per_worker * (1 << 20))

    @property
    def stream_bytes(self) -> int:
        """A file whose decoded audio takes more than this (float32 bytes) is computed in blocks (stream.py)."""
        return self.memory_bytes // 8

    @functools.cached_property
    def preset_obj(self) -> Any:
        """The :class:`arraymel.presets.Preset` of ``--preset`` (None without one)."""
        if self.preset is None:
            return None
        import arraymel.presets  # noqa: PLC0415

        return arraymel.presets.get(self.preset, **(self.preset_options or {}))

    @functools.cached_property
    def mel(self) -> MelConfig:
        """The validated configuration (top_db_scope="example")."""
        return MelConfig.create(**self.mel_params)

    def mel_config_dict(self) -> dict[str, Any]:
        """The ``get_config()``-style dict: loadable again with ``--config`` or ``MelSpectrogram.from_config``."""
        cfg = self.mel
        out = cfg.keras_config()
        out["top_db_scope"] = cfg.top_db_scope
        out["dtype"] = cfg.dtype
        out.update(_changed_extensions(cfg))
        return out

    def canonical(self) -> dict[str, Any]:
        """The hashed description of what an output contains."""
        return {
            "format": FORMAT_VERSION,
            "mel": canonical_mel(self.mel),
            # only with a preset, so that the manifests written before presets existed still match
            # the options as the preset resolved them: spelling out a default changes nothing
            **({"preset": {"name": self.preset, "options": self.preset_obj.options}} if self.preset else {}),
            "out_dtype": self.out_dtype,
            "channels": self.channels,
            "resample": {"enabled": bool(self.resample), "engine": "soxr", "quality": RESAMPLE_QUALITY},
            # only for the sharded formats, so that the manifests of npy runs written before them still match
            **({"storage": {"format": self.output_format, "shard_size": self.shard_size,
                            **({"compression": self.shar_compression} if self.output_format == "shar" else {})}}
               if self.sharded else {}),
        }

    def canonical_json(self) -> str:
        return canonical_json(self.canonical())

    @functools.cached_property
    def config_hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()

    def __getstate__(self) -> dict:  # cached properties are rebuilt where unpickled
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def __setstate__(self, state: dict) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)


def describe_difference(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Human-readable differences between two canonical descriptions (``key: old -> new``)."""
    lines = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, "<absent>"), new.get(k, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            lines += describe_difference(a, b, f"{prefix}{k}.")
        elif a != b:
            sa, sb = json.dumps(a), json.dumps(b)
            if len(sa) > 60:
                sa = sa[:57] + "..."
            if len(sb) > 60:
                sb = sb[:57] + "..."
            lines.append(f"{prefix}{k}: {sa} -> {sb}")
    return lines


def versions(device_kind: str | None = None) -> dict[str, str]:
    """Versions of everything that produced an output (recorded in each manifest row)."""
    import platform

    import arraymel

    out = {"arraymel": arraymel.__version__, "numpy": np.__version__, "python": platform.python_version()}
    try:
        import soundfile

        out["soundfile"] = soundfile.__version__
        out["libsndfile"] = soundfile.__libsndfile_version__
    except Exception:  # pragma: no cover - soundfile is required for a run
        pass
    try:
        import soxr

        out["soxr"] = soxr.__version__
    except Exception:  # pragma: no cover
        pass
    try:
        import scipy

        out["scipy"] = scipy.__version__
    except Exception:
        pass
    if device_kind == "cuda":
        try:
            import cupy

            out["cupy"] = cupy.__version__
            out["cuda_runtime"] = str(cupy.cuda.runtime.runtimeGetVersion())
        except Exception:  # pragma: no cover
            pass
    return out
