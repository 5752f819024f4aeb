"""``probseg-report``'s command line."""

from __future__ import annotations

import argparse
import sys

from probseg.cli import ArgumentParser, cli_entry

from ..arms import EXTRA_METRICS, METRICS
from ..stats import DEFAULT_N_BOOT, DEFAULT_SEED
from .tables import DEFAULT_ENDPOINT
from .write import write_report


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="probseg-report",
        description=(
            "Report on a study directory or on run directories: summary.csv (per arm, 95% image-bootstrap CIs), "
            "comparison.csv (paired differences against the reference, Wilcoxon and Holm p-values, effort tie "
            "ratio), report.md and PNG figures."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="RUN_DIR", help="one study directory, or one or more run directories")
    p.add_argument("--out", default=None, help="output folder (default: the study or single run directory)")
    p.add_argument("--reference", default=None, help="label of the reference arm, or of a study arm as its study file names it "
                   "(e.g. 'complete-k random-of-k': each arm is then compared with that arm of its own "
                   "start and training seed) (default: the study's, else the first)")
    p.add_argument("--endpoint", default=None,
                   help=f"primary endpoint metric (default: the study's, else {DEFAULT_ENDPOINT}); one of "
                        f"{', '.join(dict.fromkeys([*METRICS, *EXTRA_METRICS]))}")
    p.add_argument("--n-boot", type=int, default=None, help=f"bootstrap resamples (default: the study's, else {DEFAULT_N_BOOT})")
    p.add_argument("--seed", type=int, default=None, help=f"bootstrap seed (default: the study's, else {DEFAULT_SEED})")
    p.add_argument("--no-figures", action="store_true", help="write the tables and report.md only")
    return p


@cli_entry("probseg-report")
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``probseg-report``."""
    a = _parser().parse_args(argv)
    result = write_report(a.paths, out=a.out, reference=a.reference, endpoint=a.endpoint, n_boot=a.n_boot,
                          seed=a.seed, figures=not a.no_figures)
    for name, path in result["paths"].items():
        print(f"{name}: {path}")
    for w in result["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    return 0

