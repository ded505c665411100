"""Join options: frozen dataclasses validated in one place.

The command line, the manifest validation and the workflow jobs all build options
through ``from_mapping``, so a rule about an option lives here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from materializer.errors import UsageError

KEY_NORMALIZE_MODES = ("auto", "raw", "basename", "stem")
MOS_SCALES = ("auto", "1-5", "0-100")
MISSING_POLICIES = ("mark", "drop", "fail")
MOS_OUTPUT_COLUMNS = ("mos", "mos_raw_0_100", "mos_label_source", "mos_std_dev",
                      "mos_n_ratings", "split", "corpus", "corpus_version")
"""Columns the MOS join may write besides its status column."""


def compile_regex(pattern: str | None, field: str) -> re.Pattern[str] | None:
    """Compile a key regex, or fail with a usage error naming the option."""
    if pattern is None or pattern == "":
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise UsageError(
            f"{field} is not a valid regular expression ({exc}): {pattern!r}"
        ) from None


def _check_type(name: str, value: Any, kind: str) -> None:
    ok = {
        "str": isinstance(value, str),
        "str?": value is None or isinstance(value, str),
        "bool": isinstance(value, bool),
        "rate": isinstance(value, int | float) and not isinstance(value, bool),
    }[kind]
    if not ok:
        expected = {"str": "a string", "str?": "a string or null", "bool": "true or false",
                    "rate": "a number"}[kind]
        raise UsageError(f"{name} must be {expected}, got {value!r}", column=name)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UsageError(f"{name} must be one of {', '.join(choices)}; got {value!r}", column=name)


class _Options:
    """Shared construction from a plain mapping (manifest entry or parsed flags)."""

    TYPES: ClassVar[dict[str, str]]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]):
        """Build from a mapping, refusing unknown keys and wrong types."""
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"unknown option(s): {', '.join(unknown)}", column=unknown[0])
        for name, value in values.items():
            _check_type(name, value, cls.TYPES[name])
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """The options as a plain, sorted dict (for audits and Snakemake params)."""
        return dict(sorted(dataclasses.asdict(self).items()))  # type: ignore[call-overload]


@dataclass(frozen=True)
class MosOptions(_Options):
    """Options of the MOS-label join (same names as the command-line flags)."""

    feature_key_column: str | None = None
    label_key_column: str | None = None
    label_mos_column: str | None = None
    key_normalize: str = "auto"
    feature_key_regex: str | None = None
    label_key_regex: str | None = None
    min_match_rate: float = 0.95
    status_column: str = "mos_label_status"
    overwrite: bool = False
    mos_scale: str = "auto"
    allow_key_merge: bool = False

    TYPES: ClassVar[dict[str, str]] = {
        "feature_key_column": "str?", "label_key_column": "str?", "label_mos_column": "str?",
        "key_normalize": "str", "feature_key_regex": "str?", "label_key_regex": "str?",
        "min_match_rate": "rate", "status_column": "str", "overwrite": "bool",
        "mos_scale": "str", "allow_key_merge": "bool",
    }

    def __post_init__(self) -> None:
        _check_choice("key_normalize", self.key_normalize, KEY_NORMALIZE_MODES)
        _check_choice("mos_scale", self.mos_scale, MOS_SCALES)
        rate = self.min_match_rate
        if not (isinstance(rate, int | float) and 0.0 <= float(rate) <= 1.0):
            raise UsageError(f"min_match_rate must be in [0, 1]; got {rate!r}",
                             column="min_match_rate")
        if not self.status_column.strip():
            raise UsageError("status_column must not be empty", column="status_column")
        if self.status_column in MOS_OUTPUT_COLUMNS:
            raise UsageError(f"status_column {self.status_column!r} is one of the columns "
                             "the join writes; choose another name", column="status_column")
        compile_regex(self.feature_key_regex, "feature_key_regex")
        compile_regex(self.label_key_regex, "label_key_regex")


@dataclass(frozen=True)
class SecondOpinionOptions(_Options):
    """Options of the second-opinion join (same names as the command-line flags)."""

    key_column: str | None = None
    score_key_field: str | None = None
    score_field: str | None = None
    key_normalize: str = "auto"
    missing_policy: str = "mark"
    prefix: str = "second_opinion"
    overwrite: bool = False
    allow_key_merge: bool = False
    min_coverage: float = 0.0

    TYPES: ClassVar[dict[str, str]] = {
        "key_column": "str?", "score_key_field": "str?", "score_field": "str?",
        "key_normalize": "str", "missing_policy": "str", "prefix": "str", "overwrite": "bool",
        "allow_key_merge": "bool", "min_coverage": "rate",
    }

    def __post_init__(self) -> None:
        _check_choice("key_normalize", self.key_normalize, KEY_NORMALIZE_MODES)
        _check_choice("missing_policy", self.missing_policy, MISSING_POLICIES)
        if not 0.0 <= float(self.min_coverage) <= 1.0:
            raise UsageError(f"min_coverage must be in [0, 1]; got {self.min_coverage!r}",
                             column="min_coverage")
        if not re.fullmatch(r"[A-Za-z0-9_]+", self.prefix):
            raise UsageError(f"prefix must be letters, digits or '_'; got {self.prefix!r}",
                             column="prefix")


@dataclass(frozen=True)
class ScoreSpec:
    """One ``[LABEL=]PATH`` score source; the label is only a fallback competitor name."""

    path: str
    label: str | None = None

    @classmethod
    def parse(cls, spec: str) -> ScoreSpec:
        """Split ``LABEL=PATH`` at the first ``=`` unless the label part looks like a path.

        A label never contains ``/`` or a dot-extension path separator, so a path such as
        ``runs/a=b.jsonl`` stays whole (the older batch runner mangled it).
        """
        label, sep, path = spec.partition("=")
        if sep and label.strip() and "/" not in label and "\\" not in label and path:
            return cls(path=path, label=label.strip())
        return cls(path=spec)

    def __str__(self) -> str:
        return f"{self.label}={self.path}" if self.label else self.path
