"""Every kind of manifest mistake the workflow rejects, through `snakemake` as a user runs it.

Each must stop before any job with a non-zero exit, name the manifest file and (in the
problem's line) the table id or index and the field, print no traceback, create no output
or log, and leave every input byte-identical. Snakemake's own `.snakemake/` bookkeeping is
left out of the comparison.
"""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from rel_support import SNAKEMAKE, all_entries, run_snakemake, tree, write_files

pytestmark = pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake is not installed")

INPUTS = {
    "f.csv": "key,x\na,1\nb,2\n",
    "l.csv": "key,mos\na,3\nb,4\n",
    "own.csv": "key,mos\na,3\nb,4\n",
    "s.jsonl": '{"competitor": "d", "key": "a", "score": 1}\n',
}


def mos_table(id: str, extra: str = "", out: str | None = None, labels: str = "[l.csv]",
              features: str = "f.csv") -> str:
    body = f"id: {id}, features: {features}, labels: {labels}, out: {out or f'out/{id}.csv'}"
    return "{" + body + (", " + extra if extra else "") + "}"


def so_table(id: str, extra: str = "", scores: str = "[s.jsonl]") -> str:
    body = f"id: {id}, features: f.csv, scores: {scores}, out: out/{id}.csv"
    return "{" + body + (", " + extra if extra else "") + "}"


@dataclass
class ManifestCase:
    """A mistake, the manifest it is in, and what one problem line must say."""

    id: str
    expect: list[str]  # all in one problem line (or in the output for Snakemake's own errors)
    manifest: str = ""  # empty: one table of a shared manifest (TABLE_CASES) carries it
    table: str = ""
    exit_code: int = 2
    name: str = "manifest.yaml"


def where(id: str, index: int, field: str, section: str = "tables") -> str:
    return f"table '{id}' ({section}[{index}]) field '{field}'"


# Per-table mistakes share one older-shape MOS manifest (every problem is reported at once,
# each naming its table), so one `snakemake` start covers them all.
TABLE_CASES = [
    ManifestCase("unknown-key", ["field 'colour'", "unknown key"],
                 table=mos_table("unknown-key", "colour: red")),
    ManifestCase("missing-out", ["field 'out'", "required"],
                 table="{id: missing-out, features: f.csv, labels: [l.csv]}"),
    ManifestCase("missing-id", ["field 'id'", "required"],
                 table="{features: f.csv, labels: [l.csv], out: out/missing-id.csv}"),
    ManifestCase("overwrite-string", ["field 'overwrite'", "true or false", "'false'"],
                 table=mos_table("overwrite-string", 'overwrite: "false"')),
    ManifestCase("rate-string", ["field 'min_match_rate'", "must be a number"],
                 table=mos_table("rate-string", 'min_match_rate: "0.5"')),
    ManifestCase("rate-above-1", ["field 'min_match_rate'", "[0, 1]", "1.5"],
                 table=mos_table("rate-above-1", "min_match_rate: 1.5")),
    ManifestCase("bad-key-normalize", ["field 'key_normalize'", "'lower'"],
                 table=mos_table("bad-key-normalize", "key_normalize: lower")),
    ManifestCase("bad-mos-scale", ["field 'mos_scale'", "'0-10'"],
                 table=mos_table("bad-mos-scale", "mos_scale: 0-10")),
    ManifestCase("invalid-regex", ["field 'label_key_regex'", "not a valid regular expression"],
                 table=mos_table("invalid-regex", 'label_key_regex: "([0-9"')),
    ManifestCase("labels-empty", ["field 'labels'", "non-empty"],
                 table=mos_table("labels-empty", labels="[]")),
    ManifestCase("labels-not-a-list", ["field 'labels'", "array"],
                 table=mos_table("labels-not-a-list", labels="l.csv")),
    ManifestCase("label-not-a-string", ["field 'labels'", "string"],
                 table=mos_table("label-not-a-string", labels="[1]")),
    ManifestCase("unsupported-out-format", ["field 'out'", "unsupported table format '.xlsx'"],
                 table=mos_table("unsupported-out-format", out="out/x.xlsx")),
    ManifestCase("unsupported-input-format", ["field 'features'", "'.h5'"],
                 table=mos_table("unsupported-input-format", features="f.h5")),
    ManifestCase("audit-not-json", ["field 'audit_json'", ".json"],
                 table=mos_table("audit-not-json", "audit_json: out/audit.csv")),
    ManifestCase("duplicate-ids", ["field 'id'", "duplicates the id"],
                 table=mos_table("duplicate-ids") + "\n  - " + mos_table("duplicate-ids",
                                                                         out="out/dup2.csv")),
    ManifestCase("unsafe-id", ["table '../x'", "field 'id'"], table=mos_table("../x",
                                                                          out="out/u.csv")),
    ManifestCase("two-tables-one-file", ["field 'out'", "writes the same file as table"],
                 table=mos_table("two-tables-one-file", out="out/same.csv") + "\n  - "
                 + mos_table("two-tables-one-file-b", out="./out/same.csv")),
    ManifestCase("out-is-own-input", ["field 'out'", "own labels input"],
                 table=mos_table("out-is-own-input", labels="[own.csv]", out="own.csv")),
    ManifestCase("out-is-another-tables-labels", ["field 'labels'", "which the batch writes"],
                 table=mos_table("out-is-another-tables-labels",
                                 labels="[out/unknown-key.csv]")),
    ManifestCase("missing-input", ["field 'labels'", "not found", "gone.csv"],
                 table=mos_table("missing-input", labels="[l.csv, gone.csv]")),
]
SHARED_TABLES = "tables:\n" + "".join(f"  - {c.table}\n" for c in TABLE_CASES)

# Section-level mistakes (and second-opinion options) share one combined-shape manifest.
SECTION_CASES = [
    ManifestCase("unknown-section-key", ["mos_labels.colour", "unknown key"]),
    ManifestCase("report-md-not-md", ["mos_labels.report_md", ".md"]),
    ManifestCase("rate-in-defaults", ["mos_labels defaults field 'min_match_rate'", "[0, 1]"]),
    ManifestCase("chain-cycle", ["table 'cyc-a' (mos_labels[0]) field 'features'", "cycle"]),
    ManifestCase("bad-missing-policy", [where("bad-policy", 0, "missing_policy", "second_opinion"),
                                        "'skip'"]),
    ManifestCase("bad-prefix", [where("bad-prefix", 1, "prefix", "second_opinion"), "'a-b'"]),
    ManifestCase("scores-not-a-list", [where("scores-str", 2, "scores", "second_opinion"),
                                       "array"]),
]
SHARED_SECTIONS = (
    "mos_labels:\n  colour: red\n  report_md: reports/r.json\n"
    "  defaults: {min_match_rate: -0.1}\n  tables:\n"
    f"    - {mos_table('cyc-a', features='out/cyc-b.csv')}\n"
    f"    - {mos_table('cyc-b', features='out/cyc-a.csv')}\n"
    "second_opinion:\n  tables:\n"
    f"    - {so_table('bad-policy', 'missing_policy: skip')}\n"
    f"    - {so_table('bad-prefix', 'prefix: a-b')}\n"
    f"    - {so_table('scores-str', scores='s.jsonl')}\n"
)

# Mistakes in the manifest as a whole: one run each.
WHOLE_CASES = [
    ManifestCase("yaml-syntax", ["not valid JSON or YAML"], "tables: [ {id: a", exit_code=1),
    ManifestCase("top-level-list", ["keys at top level"], "- a\n- b\n", exit_code=1),
    ManifestCase("no-tables", ["needs tables"], "defaults: {min_match_rate: 0.5}\n"),
    ManifestCase("empty-tables", ["'tables'", "non-empty"], "kind: mos-labels\ntables: []\n"),
    ManifestCase("no-tables-listed", ["field 'tables'", "has no tables"], "tables: []\n"),
    ManifestCase("table-not-a-mapping", ["tables[0]"],
                 "kind: mos-labels\ntables:\n  - just-a-string\n"),
    ManifestCase("bad-kind", ["field 'kind'", "'mos'"],
                 f"kind: mos\ntables:\n  - {mos_table('a')}\n"),
    ManifestCase("kind-cannot-be-told", ["both labels and scores"],
                 f"tables:\n  - {mos_table('a', 'scores: [s.jsonl]')}\n"),
    ManifestCase("mixed-shapes", ["mixes the combined shape"],
                 f"tables:\n  - {mos_table('a')}\nmos_labels:\n  tables:\n"
                 f"    - {mos_table('b')}\n"),
    ManifestCase("base-dir-missing", ["field 'base_dir'", "not a directory"],
                 f"base_dir: nowhere\ntables:\n  - {mos_table('a')}\n"),
    ManifestCase("json-manifest-wrong-type", [where("a", 0, "overwrite")],
                 '{"_comment": "older runner", "tables": [{"id": "a", "features": "f.csv", '
                 '"labels": ["l.csv"], "out": "o.csv", "overwrite": "false"}]}',
                 name="manifest.json"),
]
RUNS = {"shared-tables": ManifestCase("shared-tables", [], SHARED_TABLES),
        "shared-sections": ManifestCase("shared-sections", [], SHARED_SECTIONS),
        **{c.id: c for c in WHOLE_CASES}}
CASES = [*TABLE_CASES, *SECTION_CASES, *WHOLE_CASES]
RUN_OF = {**{c.id: "shared-tables" for c in TABLE_CASES},
          **{c.id: "shared-sections" for c in SECTION_CASES},
          **{c.id: c.id for c in WHOLE_CASES}}


@dataclass
class Outcome:
    done: subprocess.CompletedProcess[str]
    before: dict[str, bytes]
    after: dict[str, bytes]
    entries_before: set[str]
    entries_after: set[str]


def run_case(folder: Path, case: ManifestCase) -> Outcome:
    folder.mkdir()
    write_files(folder, {**INPUTS, case.name: case.manifest})
    before, entries = tree(folder), all_entries(folder)
    done = run_snakemake(folder, "-c", "1", manifest=case.name)
    # Snakemake's own log of the attempt is its bookkeeping, not an output of the product.
    entries_after = {e for e in all_entries(folder) if e.split(os.sep)[0] != ".snakemake"}
    entries_before = {e for e in entries if e.split(os.sep)[0] != ".snakemake"}
    return Outcome(done, before, tree(folder), entries_before, entries_after)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    root = tmp_path_factory.mktemp("bad-manifests")
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        futures = {name: pool.submit(run_case, root / name, c) for name, c in RUNS.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_manifest_is_refused_before_any_job(outcomes: dict[str, Outcome],
                                                case: ManifestCase) -> None:
    outcome = outcomes[RUN_OF[case.id]]
    expect = list(case.expect)
    if case in TABLE_CASES and case.id not in ("unsafe-id", "missing-id"):
        expect.insert(0, f"table '{case.id}' (tables[")  # the line names the table
    output = outcome.done.stdout + outcome.done.stderr
    assert outcome.done.returncode == case.exit_code, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if "workflow specific profile" not in line]
    if case.exit_code == 2:  # the workflow's own validation: a heading, one line per problem
        name = RUNS[RUN_OF[case.id]].name
        assert lines[0].startswith(f"{name}: ") and "manifest problem" in lines[0], output
        problems = [line for line in lines[1:] if line.startswith("  - ")]
        assert problems and len(problems) == len(lines) - 1, output
        assert any(all(text in p for text in expect) for p in problems), output
    else:  # Snakemake refuses the config file itself, before the workflow runs
        assert all(text in output for text in expect), output
    assert outcome.after == outcome.before
    assert outcome.entries_after == outcome.entries_before


def test_battery_covers_every_mistake(outcomes: dict[str, Outcome]) -> None:
    assert len(CASES) >= 35 and len(set(RUN_OF)) == len(CASES)
    for name in ("shared-tables", "shared-sections"):
        problems = [line for line in outcomes[name].done.stderr.splitlines()
                    if line.startswith("  - ")]
        # every problem line says where: a table (id and index) or a manifest field
        assert all(" field '" in p for p in problems), problems


MANIFEST_OVERWRITES = [
    pytest.param("manifest.json", '{"tables": [{"id": "a", "features": "f.csv", '
                 '"labels": ["l.csv"], "out": "manifest.json"}]}', "field 'out'",
                 id="out-overwrites-the-manifest"),
    pytest.param("manifest.json", '{"mos_labels": {"report_json": "manifest.json", "tables": '
                 '[{"id": "a", "features": "f.csv", "labels": ["l.csv"], "out": "o.csv"}]}}',
                 "report_json", id="report-overwrites-the-manifest"),
    pytest.param("manifest.yaml", "tables:\n  - {id: a, features: f.csv, labels: [l.csv], "
                 "out: out/a.csv/}\n", "field 'out'", id="out-is-a-folder-path"),
]


@pytest.mark.parametrize(("name", "manifest", "expect"), MANIFEST_OVERWRITES)
def test_outputs_that_would_overwrite_the_manifest_or_name_a_folder(
        tmp_path: Path, name: str, manifest: str, expect: str) -> None:
    write_files(tmp_path, {**INPUTS, name: manifest})
    before = tree(tmp_path)
    done = run_snakemake(tmp_path, "-c", "1", manifest=name)
    assert tree(tmp_path) == before, "an input (the manifest) was overwritten"
    assert done.returncode == 2 and expect in done.stderr, done.stderr[-2000:]
