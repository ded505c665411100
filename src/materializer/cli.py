"""The two single-table commands, with the older scripts' flags.

Exit codes: 0 success, 1 bad data, 2 bad usage. Expected errors print one line on
stderr; unexpected ones keep their traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from materializer.errors import MaterializeError
from materializer.options import (
    KEY_NORMALIZE_MODES,
    MISSING_POLICIES,
    MOS_SCALES,
    MosOptions,
    SecondOpinionOptions,
)
from materializer.provenance import RunContext


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be in [0, 1]")
    return value


def mos_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="materialize-mos-labels",
        description="Join subjective MOS labels onto an extracted feature table.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--features", required=True, help="feature table")
    parser.add_argument("--labels", required=True, action="append",
                        help="label table (repeatable, read in order)")
    parser.add_argument("--out", required=True, help="output table (format by extension)")
    parser.add_argument("--audit-json", help="audit JSON path")
    parser.add_argument("--feature-key-column")
    parser.add_argument("--label-key-column")
    parser.add_argument("--label-mos-column")
    parser.add_argument("--key-normalize", choices=KEY_NORMALIZE_MODES, default="auto")
    parser.add_argument("--feature-key-regex")
    parser.add_argument("--label-key-regex")
    parser.add_argument("--min-match-rate", type=_rate, default=0.95)
    parser.add_argument("--status-column", default="mos_label_status")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing label columns")
    parser.add_argument("--mos-scale", choices=MOS_SCALES, default="auto",
                        help="scale of every label column; auto: 0-100 when at least half the "
                        "values are above 5, 1-5 when none is, an error in between")
    parser.add_argument("--allow-key-merge", action="store_true",
                        help="let the key mode fold different raw keys into one")
    return parser


def second_opinion_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="materialize-second-opinion-features",
        description="Join external no-reference scorer outputs onto a feature table.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--features", required=True, help="feature table")
    parser.add_argument("--scores", required=True, action="append", metavar="[LABEL=]PATH",
                        help="score sidecar (repeatable); LABEL is the fallback competitor")
    parser.add_argument("--out", required=True, help="output table (format by extension)")
    parser.add_argument("--audit-json", help="audit JSON path")
    parser.add_argument("--key-column")
    parser.add_argument("--score-key-field")
    parser.add_argument("--score-field")
    parser.add_argument("--key-normalize", choices=KEY_NORMALIZE_MODES, default="auto")
    parser.add_argument("--missing-policy", choices=MISSING_POLICIES, default="mark")
    parser.add_argument("--prefix", default="second_opinion")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--allow-key-merge", action="store_true",
                        help="let the key mode fold different raw keys into one")
    parser.add_argument("--min-coverage", type=_rate, default=0.0,
                        help="least share of feature rows each competitor must match "
                        "(a competitor matching no row always fails)")
    return parser


def _run(prog: str, argv: Sequence[str], job: Callable[[], dict[str, Any]],
         summary: Callable[[dict[str, Any]], str]) -> int:
    logging.basicConfig(level=logging.INFO, format=f"{prog}: %(message)s", stream=sys.stderr)
    try:
        audit = job()
    except MaterializeError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # Ctrl-C: temporary files are already removed, no traceback
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    print(f"{prog}: {summary(audit)}", file=sys.stderr)
    return 0


def mos_labels_main(argv: Sequence[str] | None = None) -> int:
    """``materialize-mos-labels``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = mos_parser().parse_args(argv)
    names = ("feature_key_column", "label_key_column", "label_mos_column", "key_normalize",
             "feature_key_regex", "label_key_regex", "min_match_rate", "status_column",
             "overwrite", "mos_scale", "allow_key_merge")

    def job() -> dict[str, Any]:
        options = MosOptions(**{n: getattr(args, n) for n in names})
        from materializer.mos import materialize_mos_labels

        run = RunContext(sys.argv[0], argv=argv, args=vars(args))
        return materialize_mos_labels(args.features, args.labels, args.out,
                                      audit_json=args.audit_json, options=options, run=run)

    return _run("materialize-mos-labels", argv, job, lambda a: (
        f"{a['matched_rows']}/{a['input_rows']} rows labelled, match rate "
        f"{a['match_rate']:.3f}, wrote {a['output']}"))


def second_opinion_main(argv: Sequence[str] | None = None) -> int:
    """``materialize-second-opinion-features``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = second_opinion_parser().parse_args(argv)
    names = ("key_column", "score_key_field", "score_field", "key_normalize",
             "missing_policy", "prefix", "overwrite", "allow_key_merge", "min_coverage")

    def job() -> dict[str, Any]:
        options = SecondOpinionOptions(**{n: getattr(args, n) for n in names})
        from materializer.second_opinion import materialize_second_opinion

        run = RunContext(sys.argv[0], argv=argv, args=vars(args))
        return materialize_second_opinion(args.features, args.scores, args.out,
                                          audit_json=args.audit_json, options=options, run=run)

    return _run("materialize-second-opinion-features", argv, job, lambda a: (
        f"{len(a['competitors'])} competitor(s), {a['output_rows']}/{a['input_rows']} rows, "
        f"wrote {a['output']}"))


__all__ = ["mos_labels_main", "second_opinion_main"]
