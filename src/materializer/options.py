"""Join options: declared once, as frozen dataclass fields with type, default, choices
and help.

The command line (flags and their help), the manifest validation and the workflow jobs
all come from these declarations and build options through ``from_mapping``, so a rule
about an option lives here and nowhere else. Messages name an option the way the user
gave it: a manifest key, or a flag inside ``named_as_flags``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from materializer.errors import UsageError

if TYPE_CHECKING:
    from materializer.agreement import Threshold

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
            f"{shown(field)} is not a valid regular expression ({exc}): {pattern!r}"
        ) from None


_EXPECTED = {"str": "a string", "str?": "a string or null", "bool": "true or false",
             "rate": "a number", "bounds": "null or [LOW, HIGH], two numbers",
             "threshold": "null, a number, or a mapping {competitor: number}"}
_STYLE: contextvars.ContextVar[str] = contextvars.ContextVar("option_style", default="key")


@contextlib.contextmanager
def named_as_flags() -> Iterator[None]:
    """Inside, messages name options as command-line flags (``--min-match-rate``)."""
    token = _STYLE.set("flag")
    try:
        yield
    finally:
        _STYLE.reset(token)


def shown(name: str) -> str:
    """An option as the user gave it: a manifest key, or a flag on the command line."""
    return f"--{name.replace('_', '-')}" if _STYLE.get() == "flag" else name


def ask_for(name: str) -> str:
    """How the user gives an option, in the words of where they give options."""
    return f"pass {shown(name)}" if _STYLE.get() == "flag" else f"set {name}"


def enable(name: str) -> str:
    """How the user turns a boolean option on."""
    return ask_for(name) if _STYLE.get() == "flag" else f"set {name}: true"


def option(default: Any, kind: str, help: str, choices: tuple[str, ...] = ()) -> Any:
    """Declare one option: its type (``str``, ``str?``, ``bool``, ``rate``), default,
    choices and help. The command line, the manifest checks and the audit read these."""
    return dataclasses.field(default=default,
                             metadata={"type": kind, "help": help, "choices": choices})


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_type(name: str, value: Any, kind: str) -> None:
    ok = {
        "str": isinstance(value, str),
        "str?": value is None or isinstance(value, str),
        "bool": isinstance(value, bool),
        "rate": _is_number(value),
        "bounds": value is None or (isinstance(value, list | tuple) and len(value) == 2
                                    and all(_is_number(v) for v in value)),
        "threshold": value is None or _is_number(value) or (
            isinstance(value, Mapping) and all(isinstance(k, str) and k and _is_number(v)
                                               for k, v in value.items())),
    }[kind]
    if not ok:
        raise UsageError(f"{shown(name)} must be {_EXPECTED[kind]}, got {value!r}",
                         column=name)


def _check_threshold(name: str, value: Any) -> None:
    """A gate on |correlation|: every number in [0, 1] (a larger one could never pass)."""
    limits = value.items() if isinstance(value, Mapping) else [(None, value)]
    for competitor, limit in limits:
        if limit is not None and not 0.0 <= float(limit) <= 1.0:
            which = f" for competitor {competitor!r}" if competitor is not None else ""
            raise UsageError(f"{shown(name)} must be in [0, 1]{which}; got {limit!r}",
                             column=name)


class _Options:
    """Shared construction from a plain mapping (manifest entry or parsed flags)."""

    TYPES: ClassVar[dict[str, str]]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]):
        """Build from a mapping, refusing unknown keys and wrong types."""
        unknown = sorted(set(values) - set(cls.TYPES))
        if unknown:
            raise UsageError(f"unknown option(s): {', '.join(unknown)}", column=unknown[0])
        for name, value in values.items():
            _check_type(name, value, cls.TYPES[name])
        return cls(**values)

    @classmethod
    def declared(cls) -> tuple[dataclasses.Field, ...]:
        """The declared options, in order."""
        return dataclasses.fields(cls)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        for field in self.declared():
            value = getattr(self, field.name)
            if field.metadata["choices"] and value not in field.metadata["choices"]:
                raise UsageError(f"{shown(field.name)} must be one of "
                                 f"{', '.join(field.metadata['choices'])}; got {value!r}",
                                 column=field.name)
            if field.metadata["type"] == "rate" and not 0.0 <= float(value) <= 1.0:
                raise UsageError(f"{shown(field.name)} must be in [0, 1]; got {value!r}",
                                 column=field.name)
            if field.metadata["type"] == "threshold":
                _check_threshold(field.name, value)
        self.check()

    def check(self) -> None:
        """Rules between or beyond single values (subclasses)."""

    def as_dict(self) -> dict[str, Any]:
        """The options as a plain, sorted dict (for audits and Snakemake params)."""
        return dict(sorted(dataclasses.asdict(self).items()))  # type: ignore[call-overload]


def _declared(cls: type) -> type:
    """A frozen dataclass whose ``TYPES`` come from its declared fields."""
    cls = dataclass(frozen=True)(cls)
    cls.TYPES = {f.name: f.metadata["type"] for f in dataclasses.fields(cls)}
    return cls


KEY_NORMALIZE_HELP = ("how keys are compared on both sides: raw text, basename or stem of a "
                      "path (split on / and \\); auto is basename for path-like column names")
MERGE_HELP = "let key_normalize fold different keys of one table into one key"
THRESHOLD_FORMS = ("a number for every competitor, NAME=NUMBER[,NAME=NUMBER...] per "
                   "competitor, or a JSON object {\"NAME\": NUMBER}")


@_declared
class MosOptions(_Options):
    """Options of the MOS-label join (same names as the command-line flags)."""

    feature_key_column: str | None = option(None, "str?", "key column of the feature table "
                                            "(inferred when absent)")
    label_key_column: str | None = option(None, "str?", "key column of the label tables "
                                          "(inferred per file when absent)")
    label_mos_column: str | None = option(None, "str?", "MOS column of the label tables "
                                          "(inferred per file when absent)")
    key_normalize: str = option("auto", "str", KEY_NORMALIZE_HELP, KEY_NORMALIZE_MODES)
    feature_key_regex: str | None = option(None, "str?", "regex applied to feature keys after "
                                           "normalisation: group 1, else the whole match")
    label_key_regex: str | None = option(None, "str?", "the same for label keys")
    min_match_rate: float = option(0.95, "rate", "least share of feature keys with a label; "
                                   "below it nothing is written")
    status_column: str = option("mos_label_status", "str", "name of the per-row status column")
    overwrite: bool = option(False, "bool", "replace existing label columns")
    mos_scale: str = option("auto", "str", "scale of every label column; auto: 0-100 when at "
                            "least half the values are above 5, 1-5 when none is, an error "
                            "in between", MOS_SCALES)
    allow_key_merge: bool = option(False, "bool", MERGE_HELP)
    mos_bounds: tuple[float, float] | None = option(
        None, "bounds", "LOW,HIGH: the raw MOS range accepted, for scales that leave their "
        "nominal range by design (CVD2014's realigned MOS reaches -6.5 on 0-100); the "
        "conversion stays the scale's (a negative LOW on the command line: --mos-bounds=-10,100)")

    def check(self) -> None:
        if self.mos_bounds is not None:
            low, high = self.mos_bounds
            if not low < high:
                raise UsageError(f"{shown('mos_bounds')} must be LOW < HIGH; got "
                                 f"{list(self.mos_bounds)}", column="mos_bounds")
            object.__setattr__(self, "mos_bounds", (float(low), float(high)))
        if not self.status_column.strip():
            raise UsageError(f"{shown('status_column')} must not be empty",
                             column="status_column")
        if self.status_column in MOS_OUTPUT_COLUMNS:
            raise UsageError(f"{shown('status_column')} {self.status_column!r} is one of the "
                             "columns the join writes; choose another name",
                             column="status_column")
        compile_regex(self.feature_key_regex, "feature_key_regex")
        compile_regex(self.label_key_regex, "label_key_regex")


@_declared
class SecondOpinionOptions(_Options):
    """Options of the second-opinion join (same names as the command-line flags)."""

    key_column: str | None = option(None, "str?", "key column of the feature table "
                                    "(inferred when absent)")
    score_key_field: str | None = option(None, "str?", "key field of the score rows "
                                         "(inferred when absent)")
    score_field: str | None = option(None, "str?", "score field of the score rows (inferred "
                                     "once per file and competitor when absent)")
    key_normalize: str = option("auto", "str", KEY_NORMALIZE_HELP, KEY_NORMALIZE_MODES)
    missing_policy: str = option("mark", "str", "rows without a score: mark them, drop them, "
                                 "or fail the table", MISSING_POLICIES)
    prefix: str = option("second_opinion", "str", "column prefix: letters, digits or _")
    overwrite: bool = option(False, "bool", "replace existing second-opinion columns")
    allow_key_merge: bool = option(False, "bool", MERGE_HELP)
    min_coverage: float = option(0.0, "rate", "least share of feature rows each competitor "
                                 "must score (a competitor scoring no row always fails)")
    agreement_mos_column: str | None = option(
        None, "str?", "feature column the agreement audit compares scores with; unset: mos "
        "when the table has one, else no agreement block. A named column must exist")
    min_abs_srcc: Threshold = option(
        None, "threshold", f"least |srcc| with MOS each competitor must reach, else the table "
        f"fails: {THRESHOLD_FORMS}")
    min_abs_plcc_logistic: Threshold = option(
        None, "threshold", f"least |plcc_logistic| with MOS (Pearson after the VQEG logistic "
        f"fit) each competitor must reach: {THRESHOLD_FORMS}")

    def check(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_]+", self.prefix):
            raise UsageError(f"{shown('prefix')} must be letters, digits or '_'; got "
                             f"{self.prefix!r}", column="prefix")
