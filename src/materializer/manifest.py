"""Batch manifests: load, validate (every problem at once) and resolve.

A manifest is the older batch runners' JSON shape (``defaults`` + ``tables``, with an
optional ``kind``) or the combined shape (``mos_labels:`` and/or ``second_opinion:``
sections). Structure is checked against the JSON schema shipped in this package
(``materializer/schemas/manifest.schema.yaml``, which ``workflow/schemas/`` links to);
option values by :mod:`materializer.options` (the same code the command line uses);
the rest (ids, paths, formats, chaining) here. Paths stay as written: the library
resolves them against ``base_dir``, which is why reports and audits read the same in
any folder.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources import files as package_files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from materializer import files, paths
from materializer.errors import MaterializeError, UsageError
from materializer.kinds import KINDS, MOS, SECOND_OPINION
from materializer.readers import format_of
from materializer.sources import Source

SECTION_KEYS = {name: kind.section for name, kind in KINDS.items()}
"""Kind → the combined shape's section key (also the default report file stem)."""
OPTION_CLASSES: dict[str, Any] = {name: kind.options for name, kind in KINDS.items()}
DEF_NAMES = {name: kind.schema_defs for name, kind in KINDS.items()}
SOURCE_FIELD = {name: kind.sources for name, kind in KINDS.items()}
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
AUDIT_SUFFIX = ".audit.json"
DEFAULT_REPORT_DIR = "reports"
BOOKKEEPING = {"logs": "job logs and status files", ".snakemake": "Snakemake's own state"}
"""Folders of the working directory that the workflow writes itself: an output there
clashes with them (a job's status file overwrote an audit of the same name)."""
AUTO_FIGURE_TABLES = 100
"""Without ``report_plots``, per-table report figures are drawn for up to this many tables."""


class ManifestError(UsageError):
    """A manifest with problems; ``problems`` lists every one, each on its own line."""

    def __init__(self, manifest: str, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        super().__init__(f"{count} manifest problem{'s' if count != 1 else ''}", file=manifest)

    def report(self) -> str:
        """All problems, one per line, after a heading line."""
        return "\n".join([str(self), *(f"  - {p}" for p in self.problems)])


@dataclass(frozen=True)
class Table:
    """One table of a section, with paths as written in the manifest."""

    kind: str
    index: int
    id: str
    feature_source: Source
    sources: tuple[Source, ...]
    out: str
    audit_json: str
    config: dict[str, Any]
    options: Any
    where: str = ""

    @property
    def features(self) -> str:
        """The feature table's path as written."""
        return self.feature_source.path

    @property
    def source_paths(self) -> tuple[str, ...]:
        """Every other file the table reads: the label or score files (without their
        ``LABEL=``), then the ``align_to`` references, the feature table's included."""
        sources = (*self.sources, self.feature_source)
        return tuple(dict.fromkeys([*(s.path for s in self.sources),
                                    *(p for s in sources for p in s.paths[1:])]))

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.features, *self.source_paths)

    def spec(self) -> dict[str, Any]:
        """What a job needs and what, changed, must rerun it (paths as written)."""
        return {
            "audit_json": self.audit_json,
            "features": self.feature_source.written,
            "id": self.id,
            "kind": self.kind,
            "options": self.options.as_dict(),
            "out": self.out,
            SOURCE_FIELD[self.kind]: [s.written for s in self.sources],
        }

    def spec_json(self) -> str:
        return json.dumps(self.spec(), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Section:
    """All tables of one kind, and where their batch report goes."""

    kind: str
    tables: tuple[Table, ...]
    report_json: str
    report_md: str
    report_json_written: str | None = None
    report_md_written: str | None = None

    @property
    def key(self) -> str:
        return SECTION_KEYS[self.kind]


@dataclass
class Manifest:
    """A validated manifest: its sections in file order and the root of relative paths."""

    path: str
    base_dir: str
    sections: list[Section] = field(default_factory=list)
    report_plots_requested: bool | None = None
    _producers: dict[str, Table] | None = field(default=None, repr=False, compare=False)

    @property
    def tables(self) -> list[Table]:
        return [table for section in self.sections for table in section.tables]

    @property
    def report_plots(self) -> bool:
        """Per-table report figures: as the manifest says, else for up to 100 tables."""
        if self.report_plots_requested is not None:
            return self.report_plots_requested
        return len(self.tables) <= AUTO_FIGURE_TABLES

    def resolve(self, written: str) -> str:
        """The absolute, normalised path of a path as written."""
        return resolve(self.base_dir, written)

    def producer(self, written: str) -> Table | None:
        """The table whose ``out`` is this path, if any."""
        if self._producers is None:
            self._producers = {self.resolve(t.out): t for t in self.tables}
        return self._producers.get(self.resolve(written))


def resolve(base_dir: str, written: str) -> str:
    """The absolute path of a manifest path, by the one rule (:func:`paths.resolve`)."""
    return str(paths.resolve(base_dir, written))


def read_manifest_file(path: str | os.PathLike[str]) -> Any:
    """Parse a manifest file (JSON or YAML) as Snakemake's ``--configfile`` does."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read manifest: {exc.strerror}", file=os.fspath(path)) from None
    try:
        if Path(path).suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        first = " ".join(str(exc).split())
        raise UsageError(f"manifest is not valid JSON/YAML: {first}", file=os.fspath(path)) \
            from None


def schema_resource() -> Traversable:
    """The manifest JSON schema: package data of ``materializer``, so found in any install
    (``workflow/schemas/manifest.schema.yaml`` is a link to it, not a copy)."""
    return package_files("materializer") / "schemas" / "manifest.schema.yaml"


def schema_path() -> Path:
    """The file of the shipped schema (the package is installed as files, not zipped)."""
    return Path(str(schema_resource()))


def _load_schema(path: Path | None) -> dict[str, Any]:
    if path is None:
        return yaml.safe_load(schema_resource().read_text(encoding="utf-8"))
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _strip_comments(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _strip_comments(v) for k, v in value.items()
                if not (isinstance(k, str) and k.startswith("_"))}
    if isinstance(value, list):
        return [_strip_comments(v) for v in value]
    return value


class _Problems:
    """Collects problems, each naming the section, table id (or index) and field."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        text = f"{where}: {message}" if where else message
        if text not in self.items:
            self.items.append(text)


def _where_table(section: str, index: int, raw: Any, field_name: str | None = None) -> str:
    ident = raw.get("id") if isinstance(raw, Mapping) else None
    name = f"table {ident!r} ({section}[{index}])" if ident not in (None, "") else \
        f"table {section}[{index}]"
    return f"{name} field {field_name!r}" if field_name else name


def _schema_message(error: Any) -> tuple[str | None, str]:
    """A short message and the offending field for one jsonschema error."""
    validator = error.validator
    path = list(error.absolute_path)
    field_name = next((str(p) for p in reversed(path) if isinstance(p, str)), None)
    if validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {}))
                       - {k for k in error.instance if str(k).startswith("_")})
        return (str(extra[0]) if len(extra) == 1 else field_name,
                f"unknown key{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))}")
    if validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", error.message)
        return (missing[0] if missing else field_name, "is required")
    if validator == "minItems":
        return field_name, "must be a non-empty list"
    if validator == "minLength":
        return field_name, "must not be empty"
    if validator == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        article = "an" if str(expected)[:1] in "aeiou" else "a"
        return field_name, f"must be {article} {expected}, got {error.instance!r}"
    if validator == "pattern" and field_name in ("report_json", "audit_json"):
        return field_name, f"must end in .json, got {error.instance!r}"
    if validator == "pattern" and field_name == "report_md":
        return field_name, f"must end in .md, got {error.instance!r}"
    if validator == "enum":
        return field_name, f"must be one of {', '.join(map(str, error.validator_value))}; " \
                           f"got {error.instance!r}"
    return field_name, error.message


@functools.lru_cache(maxsize=8)
def _fast_validator(schema_json: str) -> Callable[[Any], bool]:
    """Whether data fits the schema, from compiled code: ~1,000x faster than jsonschema
    on a 1,000-table manifest. Only a manifest that fails it is checked again with
    jsonschema, which lists every problem with its place."""
    import fastjsonschema

    check = fastjsonschema.compile(json.loads(schema_json))

    def valid(data: Any) -> bool:
        try:
            check(data)
        except fastjsonschema.JsonSchemaException:
            return False
        return True

    return valid


def _schema_problems(data: Any, schema: dict[str, Any], problems: _Problems,
                     section_of: dict[str, str]) -> set[tuple[str, int]]:
    """Validate structure; returns (section, index) of tables with structural problems."""
    if _fast_validator(json.dumps(schema, sort_keys=True))(data):
        return set()
    from jsonschema import Draft202012Validator

    broken: set[tuple[str, int]] = set()
    validator = Draft202012Validator(schema)
    for error in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.path]):
        path = list(error.absolute_path)
        field_name, message = _schema_message(error)
        if len(path) >= 2 and path[0] in section_of.values() and path[1] == "tables" \
                or (len(path) >= 1 and path[0] == "tables"):
            offset = 0 if path[0] == "tables" else 1
            section = section_of.get(path[0], path[0]) if offset else section_of["tables"]
            if len(path) > offset + 1:
                index = int(path[offset + 1])
                raw = data[path[0]]["tables"][index] if offset else data["tables"][index]
                broken.add((section, index))
                fname = field_name if field_name not in (None, "tables") else None
                problems.add(_where_table(section, index, raw, fname), message)
                continue
            problems.add(f"{section} field 'tables'", message)
            continue
        where = ".".join(str(p) for p in path)
        if field_name and (not where or not where.endswith(field_name)):
            where = f"{where}.{field_name}" if where else field_name
        problems.add(f"field {where!r}" if where else "manifest", message)
    return broken


def _infer_kind(data: Mapping[str, Any], problems: _Problems) -> str | None:
    kind = data.get("kind")
    if kind in (MOS, SECOND_OPINION):
        return kind
    if kind is not None:
        return None  # the schema reports the bad value
    tables = data.get("tables")
    if not isinstance(tables, list):
        problems.add("field 'tables'", f"must be a list of tables, got {tables!r}")
        return None
    if not tables:
        problems.add("field 'tables'", "the manifest has no tables (the list is empty)")
        return None
    has = {name for t in tables if isinstance(t, Mapping) for name in ("labels", "scores")
           if name in t}
    if has == {"labels"}:
        return MOS
    if has == {"scores"}:
        return SECOND_OPINION
    problems.add("manifest", "cannot tell the kind of its tables (they carry "
                 f"{'both labels and scores' if has else 'neither labels nor scores'}); "
                 f"set kind: {MOS} or {SECOND_OPINION}")
    return None


def _option_problems(kind: str, values: Mapping[str, Any], where: str,
                     problems: _Problems) -> dict[str, Any]:
    """Check each option on its own, so every bad option is reported, not just the first.

    Returns the options that passed.
    """
    cls = OPTION_CLASSES[kind]
    good = {}
    for name, value in values.items():
        try:
            cls.from_mapping({name: value})
        except MaterializeError as exc:
            problems.add(f"{where} field {name!r}", exc.message)
        else:
            good[name] = value
    return good


def _format_problem(path: str, read: Mapping[str, Any] | None, is_input: bool) -> str | None:
    """Why a path cannot be read (inputs: any reader's format) or written (outputs)."""
    try:
        if is_input:
            format_of(path, read)
        else:
            files.table_format(path)
    except MaterializeError as exc:
        return exc.message
    return None


def _cycles(tables: Sequence[Any], producer: dict[str, Any], manifest: Manifest) \
        -> list[list[Any]]:
    """Chains of tables whose features come from each other's ``out`` in a loop."""
    found: list[list[Table]] = []
    seen: set[tuple[str, str]] = set()
    for start in tables:
        chain = [start]
        current = start
        while True:
            upstream = producer.get(manifest.resolve(current.features))
            if upstream is None:
                break
            if upstream is current and len(chain) == 1:
                break  # out == features: reported as overwriting its own input
            if upstream in chain:
                loop = chain[chain.index(upstream):]
                ident = frozenset((t.kind, t.id) for t in loop)
                if ident not in seen:
                    seen.add(ident)  # type: ignore[arg-type]
                    found.append(loop)
                break
            chain.append(upstream)
            current = upstream
    return found


def load_manifest(
    data: Any,
    *,
    manifest_path: str,
    base_dir: str | None = None,
    report_dir: str | None = None,
    schema: Path | None = None,
    check_inputs: bool = True,
) -> Manifest:
    """Validate a parsed manifest and resolve it, or raise :class:`ManifestError`.

    ``base_dir`` (from ``--config base_dir=``) overrides the manifest's own ``base_dir``;
    it is relative to the working directory. The manifest's ``base_dir`` is relative to
    the manifest's folder; without either, paths resolve from the manifest's folder.
    Default report paths go under ``report_dir`` (default: ``reports/<manifest stem>/``
    in the working directory, which is Snakemake's ``-d``). No output may go into the
    working directory's bookkeeping folders (:data:`BOOKKEEPING`).
    """
    problems = _Problems()
    manifest_dir = os.path.dirname(os.path.abspath(manifest_path))
    if not isinstance(data, Mapping):
        raise ManifestError(manifest_path, ["the manifest must be a mapping (JSON object)"])
    data = dict(data)
    combined = [SECTION_KEYS[k] for k in (MOS, SECOND_OPINION) if SECTION_KEYS[k] in data]
    older = [k for k in ("tables", "defaults", "kind") if k in data]
    if combined and older:
        problems.add("manifest", f"mixes the combined shape ({', '.join(combined)}) with "
                     f"top-level {', '.join(older)}; put tables inside the sections")
    if not combined and "tables" not in data:
        problems.add("manifest", "needs tables (older shape) or a mos_labels/second_opinion "
                     "section (combined shape)")

    kinds: dict[str, str] = {}  # data key → kind
    section_of: dict[str, str] = {}
    if combined:
        for kind in (MOS, SECOND_OPINION):
            if SECTION_KEYS[kind] in data:
                kinds[SECTION_KEYS[kind]] = kind
                section_of[SECTION_KEYS[kind]] = SECTION_KEYS[kind]
    elif "tables" in data:
        kind = _infer_kind(data, problems)
        if kind is not None:
            kinds[""] = kind
        section_of["tables"] = "tables"

    full_schema = _load_schema(schema)
    checked = dict(data)
    if "" in kinds:
        # Older shape: validate the top level and its tables as a section of its kind.
        section_schema = {"$defs": full_schema["$defs"],
                          "$ref": f"#/$defs/{DEF_NAMES[kinds['']]}_section"}
        top = {k: v for k, v in data.items() if k not in ("defaults", "tables")}
        _schema_problems(top, full_schema, problems, {})
        section_doc = {k: data[k] for k in ("defaults", "tables") if k in data}
        broken = _schema_problems(section_doc, section_schema, problems,
                                  {"tables": "tables"})
    else:
        if "tables" in checked and not combined:
            checked.pop("tables")
        broken = _schema_problems(checked, full_schema, problems, section_of)

    # base_dir: --config wins (relative to the working directory), then the manifest's own.
    if base_dir is not None:
        root = os.path.abspath(os.path.expanduser(str(base_dir)))
    elif isinstance(data.get("base_dir"), str) and data["base_dir"]:
        root = resolve(manifest_dir, data["base_dir"])
    else:
        root = manifest_dir
    if not os.path.isdir(root):
        problems.add("field 'base_dir'", f"is not a directory: {root}")
    manifest = Manifest(path=manifest_path, base_dir=root,
                        report_plots_requested=data.get("report_plots"))
    stem = Path(manifest_path).name.split(".")[0] or "manifest"
    work_dir = os.getcwd()
    reports = report_dir or os.path.join(work_dir, DEFAULT_REPORT_DIR, stem)

    outs = {resolve(root, t["out"]) for key in kinds
            for t in _raw_tables(data if key == "" else data.get(key))
            if isinstance(t.get("out"), str) and t["out"]}
    partials: list[Any] = []
    for key, kind in kinds.items():
        body = data if key == "" else data.get(key)
        if not isinstance(body, Mapping):
            continue
        label = key or "tables"
        defaults = body.get("defaults") or {}
        defaults = _strip_comments(defaults) if isinstance(defaults, Mapping) else {}
        known = set(OPTION_CLASSES[kind].TYPES)
        defaults = _option_problems(kind, {k: v for k, v in defaults.items() if k in known},
                                    f"{key or 'manifest'} defaults", problems)
        raw_tables = body.get("tables") if isinstance(body.get("tables"), list) else []
        tables: list[Table] = []
        seen_ids: dict[str, int] = {}
        for index, raw in enumerate(raw_tables):
            if not isinstance(raw, Mapping):
                continue
            ident = raw.get("id")
            if isinstance(ident, str | int) and not isinstance(ident, bool):
                if str(ident) in seen_ids:
                    problems.add(f"{_where_table(label, index, raw)} field 'id'",
                                 f"duplicates the id of {label}[{seen_ids[str(ident)]}]")
                seen_ids.setdefault(str(ident), index)
            table = _build_table(kind, label, index, raw, defaults, known,
                                 (label, index) in broken, problems, root, outs, check_inputs,
                                 partials)
            if table is not None:
                tables.append(table)
        name = SECTION_KEYS[kind].replace("_", "-")
        json_written = body.get("report_json") if isinstance(body.get("report_json"), str) \
            else None
        md_written = body.get("report_md") if isinstance(body.get("report_md"), str) else None
        manifest.sections.append(Section(
            kind=kind,
            tables=tuple(tables),
            report_json=resolve(root, json_written) if json_written
            else os.path.join(reports, f"{name}.json"),
            report_md=resolve(root, md_written) if md_written
            else os.path.join(reports, f"{name}.md"),
            report_json_written=json_written,
            report_md_written=md_written,
        ))

    _cross_checks(manifest, partials, problems, work_dir)
    if problems.items:
        raise ManifestError(manifest_path, problems.items)
    return manifest


def _raw_tables(body: Any) -> list[Mapping[str, Any]]:
    tables = body.get("tables") if isinstance(body, Mapping) else None
    return [t for t in tables if isinstance(t, Mapping)] if isinstance(tables, list) else []


def _build_table(kind: str, label: str, index: int, raw: Mapping[str, Any],
                 defaults: Mapping[str, Any], known: set[str], broken: bool,
                 problems: _Problems, root: str, outs: set[str],
                 check_inputs: bool, partials: list[Any]) -> Table | None:
    """Per-table checks the schema cannot express; None when the table is unusable."""
    raw = _strip_comments(raw)
    where = _where_table(label, index, raw)
    ident = raw.get("id")
    if isinstance(ident, int) and not isinstance(ident, bool):
        ident = str(ident)
    if isinstance(ident, str) and not SAFE_ID.fullmatch(ident):
        problems.add(f"{where} field 'id'", "must be 1-128 letters, digits, '.', '_' or '-' "
                     "starting with a letter or digit (it names log and status files)")
        ident = None
    table_options = {k: v for k, v in raw.items() if k in known}
    _option_problems(kind, table_options, where, problems)
    config = {**defaults, **table_options}
    try:
        options = OPTION_CLASSES[kind].from_mapping(config)
    except MaterializeError:
        options = None  # every bad option was reported above
    parsed = _path_problems(kind, raw, where, root, outs, problems, check_inputs)
    if broken or not parsed or options is None or not isinstance(ident, str):
        partials.append(_partial_entry(kind, index, raw, where))
        return None
    out = raw["out"]
    audit = raw.get("audit_json") or f"{out}{AUDIT_SUFFIX}"
    kind_of = KINDS[kind]
    table = Table(kind=kind, index=index, id=ident, feature_source=Source.parse(raw["features"]),
                  sources=tuple(kind_of.source(s) for s in raw[SOURCE_FIELD[kind]]), out=out,
                  audit_json=audit, config=dict(config), options=options, where=where)
    return table


def _path_problems(kind: str, raw: Mapping[str, Any], where: str, root: str, outs: set[str],
                   problems: _Problems, check_inputs: bool) -> bool:
    """Formats of every path field, and inputs that neither exist nor are a table's out;
    sources given as mappings are parsed here. False when one cannot be parsed."""
    fields: list[tuple[str, Any, Mapping[str, Any] | None, bool]] = [
        ("out", raw.get("out"), None, False)]
    values = raw.get(SOURCE_FIELD[kind])
    parsed = True
    for name, value in [("features", raw.get("features")),
                        *((SOURCE_FIELD[kind], v) for v in
                          (values if isinstance(values, list) else []))]:
        try:
            labelled = name != "features" and KINDS[kind].labelled_sources
            source = Source.parse(value, labelled=labelled) \
                if isinstance(value, str | Mapping) and value else None
        except MaterializeError as exc:
            problems.add(f"{where} field {name!r}", exc.message)
            parsed = False
            continue
        if source is not None:
            fields.append((name, source.path, source.read, True))
            if source.align_to is not None:
                fields.append((f"{name}.align_to", source.align_to.path,
                               source.align_to.read, True))
    for name, path, read, is_input in fields:
        if not isinstance(path, str) or not path:
            continue
        message = _format_problem(path, read, is_input)
        if not is_input and path.endswith(("/", os.sep)):
            message = "names a folder (ends with a path separator), not a table file"
        if message:
            problems.add(f"{where} field {name!r}", message)
            continue
        resolved = resolve(root, path)
        if is_input and check_inputs and resolved not in outs and not os.path.isfile(resolved):
            problems.add(f"{where} field {name!r}",
                         f"input file not found and no table writes it: {resolved}")
    return parsed


@dataclass(frozen=True)
class _Entry:
    """The path fields of a table too broken to run, still checked against the others."""

    kind: str
    index: int
    id: str
    where: str
    features: str | None
    source_paths: tuple[str, ...]
    out: str | None
    audit_json: str | None


def _partial_entry(kind: str, index: int, raw: Mapping[str, Any], where: str) -> _Entry:
    def text(name: str) -> str | None:
        value = raw.get(name)
        return value if isinstance(value, str) and value else None

    values = raw.get(SOURCE_FIELD[kind])
    source_paths = tuple(_path_of(kind, v) for v in (values if isinstance(values, list) else []))
    out = text("out")
    audit = text("audit_json") or (f"{out}{AUDIT_SUFFIX}" if out else None)
    features = _path_of(kind, raw.get("features"), "features")
    return _Entry(kind, index, str(raw.get("id")), where, features,
                  tuple(p for p in source_paths if p), out, audit)


def _path_of(kind: str, value: Any, field: str | None = None) -> str | None:
    """The path of a source as written, or None when it cannot be parsed."""
    try:
        return Source.parse(value, labelled=field is None and KINDS[kind].labelled_sources).path
    except MaterializeError:
        return None


def _cross_checks(manifest: Manifest, partials: Sequence[_Entry], problems: _Problems,
                  work_dir: str) -> None:
    """Colliding outputs, outputs that are inputs, cycles (broken tables included)."""
    writers: dict[str, list[str]] = {}
    entries: list[Any] = [*manifest.tables, *partials]
    entries.sort(key=lambda e: (list(SECTION_KEYS).index(e.kind), e.index))
    for table in entries:
        for name, path in (("out", table.out), ("audit_json", table.audit_json)):
            if path is not None:
                writers.setdefault(manifest.resolve(path), []).append(
                    f"{table.where} field {name!r}")
    for section in manifest.sections:
        for name, path in (("report_json", section.report_json),
                           ("report_md", section.report_md)):
            writers.setdefault(path, []).append(f"{section.key} {name}")
    manifest_file = os.path.abspath(manifest.path)
    bookkeeping = {name: os.path.realpath(os.path.join(work_dir, name)) for name in BOOKKEEPING}
    real_folder = functools.lru_cache(maxsize=None)(os.path.realpath)
    for path, who in writers.items():
        if len(who) > 1:
            problems.add(who[1], f"writes the same file as {who[0]}: {path}")
        if os.path.abspath(path) == manifest_file:
            problems.add(who[0], f"would overwrite the manifest itself: {path}")
        folder = _bookkeeping_folder(real_folder(os.path.dirname(path)), bookkeeping)
        for writer in who if folder else ():
            problems.add(writer, f"is inside {folder}/ of the working directory, which holds "
                         f"the workflow's {BOOKKEEPING[folder]}: {path}")

    producer = {manifest.resolve(t.out): t for t in entries if t.out}
    outputs = set(writers)
    for table in entries:
        where = table.where
        own_out = manifest.resolve(table.out) if table.out else None
        fields = [("features", table.features),
                  *((SOURCE_FIELD[table.kind], p) for p in table.source_paths)]
        for name, path in fields:
            if path is None:
                continue
            resolved = manifest.resolve(path)
            if resolved == own_out:
                problems.add(f"{where} field 'out'", f"is also its own {name} input "
                             f"{path!r}; writing it would overwrite the input")
                continue
            if name != "features" and resolved in outputs:
                problems.add(f"{where} field {name!r}", f"reads {path!r}, which the batch "
                             "writes (only features may read another table's out)")
                continue
            if name == "features" and resolved in outputs and resolved not in producer:
                problems.add(f"{where} field 'features'", f"reads {path!r}, which the batch "
                             "writes but is not a table's out")
                continue
            if table.audit_json and resolved == manifest.resolve(table.audit_json):
                problems.add(f"{where} field 'audit_json'", f"is also its own {name} input")
    chained = [e for e in entries if e.features and e.out]
    for loop in _cycles(chained, producer, manifest):
        names = " -> ".join(repr(t.id) for t in [*loop, loop[0]])
        problems.add(f"{loop[0].where} field 'features'",
                     f"tables read each other's out in a cycle: {names}")


def _bookkeeping_folder(real_parent: str, folders: Mapping[str, str]) -> str | None:
    """The bookkeeping folder (name → real path) holding a file whose folder's real path
    is ``real_parent`` (symlinked folders followed; the file itself is replaced, not
    written through, so its own link does not count)."""
    return next((name for name, folder in folders.items()
                 if os.path.commonpath([real_parent, folder]) == folder), None)
