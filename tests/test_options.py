"""Options are declared once: the command-line flags, the manifest schema's option keys
and the dataclass fields name the same options for both kinds, and messages name an
option the way the user gave it."""

from __future__ import annotations

import argparse

import pytest
import yaml
from conftest import ROOT, run_command

from materializer import cli
from materializer.kinds import KINDS
from materializer.manifest import ManifestError, load_manifest

PARSERS = {"mos-labels": cli.mos_parser, "second-opinion": cli.second_opinion_parser}
PATH_FLAGS = {"features", "labels", "scores", "out", "audit_json"}


def schema() -> dict:
    return yaml.safe_load((ROOT / "workflow" / "schemas" / "manifest.schema.yaml").read_text())


def flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {action.dest: action for action in parser._actions if action.dest != "help"}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_flags_schema_keys_and_fields_name_the_same_options(kind: str) -> None:
    declared = {f.name for f in KINDS[kind].options.declared()}
    assert set(flags(PARSERS[kind]())) - PATH_FLAGS == declared
    defs = schema()["$defs"]
    prefix = KINDS[kind].schema_defs
    assert set(defs[f"{prefix}_defaults"]["properties"]) == declared
    table_keys = set(defs[f"{prefix}_table"]["properties"])
    assert table_keys - {"id", "features", KINDS[kind].sources, "out", "audit_json"} == declared


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_flag_defaults_choices_and_help_come_from_the_declaration(kind: str) -> None:
    actions = flags(PARSERS[kind]())
    for field in KINDS[kind].options.declared():
        action = actions[field.name]
        assert action.help == field.metadata["help"]
        assert action.default == field.default
        assert tuple(action.choices or ()) == field.metadata["choices"]


def test_messages_name_flags_on_the_command_line_and_keys_in_a_manifest(tmp_path) -> None:
    (tmp_path / "f.csv").write_text("key\na\nb\n")
    (tmp_path / "l.csv").write_text("key,mos\na,3\n")
    done = run_command("materialize-mos-labels", "--features", "f.csv", "--labels", "l.csv",
                       "--out", "o.csv", cwd=tmp_path)
    assert done.returncode == 1 and "below --min-match-rate 0.950" in done.stderr
    data = {"tables": [{"id": "t", "features": "f.csv", "labels": ["l.csv"], "out": "o.csv",
                        "key_normalize": "base"}]}
    with pytest.raises(ManifestError) as caught:
        load_manifest(data, manifest_path=str(tmp_path / "m.yaml"))
    assert any("field 'key_normalize': key_normalize must be one of" in p
               for p in caught.value.problems), caught.value.problems
