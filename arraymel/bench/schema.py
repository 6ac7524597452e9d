"""The JSON schema of ``arraymel bench --json`` (schema id ``arraymel-bench/1``).

The document (one run):

- ``schema``: ``"arraymel-bench/1"``; ``created``: ISO 8601 UTC time; ``command``: the command line.
- ``python``, ``platform``; ``versions``: every relevant distribution's version, ``null`` when
  not installed.
- ``settings``: clip ``seconds``, ``sampling_rate`` override, ``batches`` (``null``: the
  per-device defaults), ``repeat`` (``null``: adaptive), ``warmup``, ``budget_s``, ``seed``,
  ``dtype``, and the ``timers`` used.
- ``devices``: each device's ``id`` (``cpu``, ``cuda:N``), ``name`` (CPU model / GPU name),
  ``cores`` (CPU: cores in the affinity mask; GPU: multiprocessors), ``memory_bytes``,
  ``threads`` (CPU thread pools), and ``reason`` when it could not be used.
- ``configs``: each configuration's parameters (Keras's 13, plus ``top_db_scope`` when set).
- ``peers``: each library's semantics ``note`` and the device kinds it runs on.
- ``results``: one row per (device, library, config, batch) that ran: every counted time
  (``times_s``), ``median_s``, quartiles and ``iqr_s``, ``audio_hours_per_s``,
  ``speed_vs_arraymel`` (arraymel's median time / this row's: > 1 is faster than arraymel),
  ``peak_memory_bytes`` with its ``memory_method`` (``null`` when not measurable), and
  ``agreement``: ``{value, unit, reference}``, the max |difference| to arraymel on the same
  input and device (``unit`` ``"dB"``, ``"relative"`` to the peak for power output, or ``"output"``: a
  preset's own units), ``null``
  for the reference row itself; ``other_processes_share``: the share of the machine's CPU time
  that other processes used while the row was timed (``null`` where unknown).
- ``cpu_activity``: CPU-seconds used by this process and by all others during the run (from
  ``/proc/stat``): other processes competing for the CPU inflate CPU timings; ``null`` where
  ``/proc/stat`` cannot be read.
- ``skipped``: peers or devices that did not run, with ``status`` ``"skipped"`` (not
  installed, unsupported device or parameters) or ``"error"`` (it raised), and the ``reason``.
"""

from __future__ import annotations

from typing import Any

_num = {"type": "number"}
_num_or_null = {"type": ["number", "null"]}
_str_or_null = {"type": ["string", "null"]}
_int_or_null = {"type": ["integer", "null"]}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "arraymel-bench/1",
    "title": "arraymel bench report",
    "type": "object",
    "required": ["schema", "created", "versions", "settings", "devices", "configs", "peers", "results", "skipped"],
    "properties": {
        "schema": {"const": "arraymel-bench/1"},
        "created": {"type": "string", "format": "date-time"},
        "command": _str_or_null,
        "python": {"type": "string"},
        "platform": {"type": "string"},
        "versions": {
            "type": "object",
            "required": ["arraymel", "numpy"],
            "properties": {"arraymel": {"type": "string"}, "numpy": {"type": "string"}},
            "additionalProperties": _str_or_null,
        },
        "settings": {
            "type": "object",
            "required": ["seconds", "repeat", "warmup", "seed", "dtype", "timers"],
            "properties": {
                "seconds": {"type": "number", "exclusiveMinimum": 0},
                "sampling_rate": _num_or_null,
                "batches": {"type": ["array", "null"], "items": {"type": "integer", "minimum": 1}},
                "repeat": {"type": ["integer", "null"], "minimum": 1},
                "warmup": {"type": "integer", "minimum": 0},
                "budget_s": _num,
                "seed": {"type": "integer"},
                "dtype": {"enum": ["float32", "float64"]},
                "timers": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "devices": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "kind", "name", "cores", "memory_bytes", "reason"],
                "properties": {
                    "id": {"type": "string", "pattern": "^(cpu|cuda:[0-9]+)$"},
                    "kind": {"enum": ["cpu", "cuda"]},
                    "index": _int_or_null,
                    "name": {"type": "string"},
                    "cores": _int_or_null,
                    "memory_bytes": _int_or_null,
                    "threads": {"type": "object"},
                    "detail": {"type": "object"},
                    "reason": _str_or_null,
                },
            },
        },
        "configs": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "type": "object",
                "required": ["fft_length", "sequence_stride", "sampling_rate", "num_mel_bins"],
                "properties": {
                    "fft_length": {"type": "integer", "minimum": 1},
                    "sequence_stride": {"type": "integer", "minimum": 1},
                    "sequence_length": _int_or_null,
                    "window": {"type": ["string", "array", "null"]},
                    "sampling_rate": _num,
                    "num_mel_bins": {"type": "integer", "minimum": 1},
                    "min_freq": _num,
                    "max_freq": _num_or_null,
                    "power_to_db": {"type": "boolean"},
                    "top_db": _num_or_null,
                    "mag_exp": _num,
                    "min_power": _num,
                    "ref_power": _num,
                    "top_db_scope": {"enum": ["batch", "example"]},
                },
            },
        },
        "peers": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["note", "kinds"],
                "properties": {"note": {"type": "string"}, "kinds": {"type": "array", "items": {"type": "string"}}},
            },
        },
        "memory_methods": {"type": "object", "additionalProperties": {"type": "string"}},
        "cpu_activity": {
            "type": ["object", "null"],
            "properties": {
                "wall_s": _num, "cpu_s_this_process": _num, "cpu_s_machine": _num,
                "cpu_s_other_processes": {"type": "number", "minimum": 0}, "cores": {"type": "integer"},
                "other_processes_share": _num_or_null,
            },
        },
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "device", "library", "config", "batch", "seconds", "audio_hours", "timer", "warmup", "repeat",
                    "times_s", "median_s", "q1_s", "q3_s", "iqr_s", "audio_hours_per_s", "speed_vs_arraymel",
                    "peak_memory_bytes", "memory_method", "agreement", "note",
                ],
                "properties": {
                    "device": {"type": "string"},
                    "library": {"type": "string"},
                    "config": {"type": "string"},
                    "batch": {"type": "integer", "minimum": 1},
                    "seconds": {"type": "number", "exclusiveMinimum": 0},
                    "samples": {"type": "integer", "minimum": 1},
                    "frames": {"type": "integer", "minimum": 1},
                    "audio_hours": {"type": "number", "exclusiveMinimum": 0},
                    "timer": {"enum": ["cpu", "cupy", "torch"]},
                    "warmup": {"type": "integer", "minimum": 0},
                    "repeat": {"type": "integer", "minimum": 1},
                    "times_s": {"type": "array", "minItems": 1, "items": {"type": "number", "minimum": 0}},
                    "median_s": {"type": "number", "minimum": 0},
                    "q1_s": _num,
                    "q3_s": _num,
                    "iqr_s": {"type": "number", "minimum": 0},
                    "audio_hours_per_s": _num_or_null,
                    "speed_vs_arraymel": _num_or_null,
                    "peak_memory_bytes": _int_or_null,
                    "memory_method": {"enum": [None, "tracemalloc", "cupy-pool", "torch-cuda"]},
                    "agreement": {
                        "oneOf": [
                            {"type": "null"},
                            {
                                "type": "object",
                                "required": ["value", "unit", "reference"],
                                "properties": {
                                    "value": {"type": ["number", "null"], "minimum": 0},
                                    "unit": {"enum": ["dB", "relative", "output"]},
                                    "reference": {"type": "string"},
                                },
                            },
                        ]
                    },
                    "note": {"type": "string"},
                    "other_processes_share": {"type": ["number", "null"], "minimum": 0},
                },
            },
        },
        "skipped": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["device", "library", "status", "reason"],
                "properties": {
                    "device": {"type": "string"},
                    "library": {"type": "string"},
                    "config": _str_or_null,
                    "batch": _int_or_null,
                    "status": {"enum": ["skipped", "error"]},
                    "reason": {"type": "string"},
                },
            },
        },
    },
}


def validate(doc: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` when ``doc`` does not follow :data:`SCHEMA` (needs jsonschema)."""
    import jsonschema  # noqa: PLC0415

    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(doc)
