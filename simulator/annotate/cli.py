"""``probseg-annotate``: run a user study in the browser, export it, fit the effort model, replay it.

    probseg-annotate check STUDY.toml                      # validate the study, print its arms and plans
    probseg-annotate serve STUDY.toml --participants 4     # print one link per participant, then serve
    probseg-annotate export STUDY.toml --out DIR           # the log as simulator run directories
    probseg-annotate fit-effort STUDY.toml --out effort.json
    probseg-annotate replay STUDY.toml                     # check every logged Dice by replaying the inputs

The log is ``results/annotate/NAME/log.sqlite`` unless ``--db`` says otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from probseg.cli import ArgumentParser, cli_entry

from .service import StudyService, default_db
from .store import Store
from .study import UserStudy, load_user_study

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="probseg-annotate", description="User studies: the simulator's sessions with a person "
                                                            "choosing and correcting, in a browser.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_, description=help_, formatter_class=p.formatter_class)
        c.add_argument("study", metavar="STUDY", help="the study's TOML file")
        if name != "check":
            c.add_argument("--db", default=None, help="the study's log (default: results/annotate/NAME/log.sqlite)")
        return c

    command("check", "validate a study file and print its arms and each participant's plan")
    c = command("serve", "print one link per participant and serve the study until interrupted")
    c.add_argument("--participants", type=int, default=1, help="participants (links); more can be added later")
    c.add_argument("--host", default="127.0.0.1", help="address to bind; anything but localhost prints a warning")
    c.add_argument("--port", type=int, default=8000, help="port to bind")
    c = command("export", "write each (arm, participant) as a run directory probseg-report reads")
    c.add_argument("--out", required=True, help="output folder")
    c = command("fit-effort", "fit per-click, per-inspection and per-choice seconds from the log")
    c.add_argument("--out", required=True, help="the effort file to write (JSON; probseg-simulate --effort-model)")
    c.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of participants")
    c.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    command("replay", "replay every logged action through the simulator and compare the Dice with the log")
    return p


def _service(study: UserStudy, db: str | None) -> StudyService:
    return StudyService(study, Store(db or default_db(study), study.name, study.fingerprint()))


@cli_entry("probseg-annotate")
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``probseg-annotate``."""
    a = _parser().parse_args(argv)
    study = load_user_study(a.study)
    if a.command == "check":
        print(f"{study.name}: {len(study.cases)} cases, {len(study.practice)} practice, dataset {study.dataset}")
        for i, arm in enumerate(study.arms):
            print(f"  arm {i}: {arm.label} ({arm.method}, K={arm.k})")
        for pid in range(len(study.arms)):
            print(f"  participant {pid}: " + ", ".join(f"{t.kind} case {t.case} arm {t.arm}" for t in study.plan(pid)))
        return 0
    if a.command == "serve":
        if a.participants < 1:
            raise ValueError(f"participants: must be >= 1, got {a.participants}")
        if not 0 < a.port < 65536:
            raise ValueError(f"port: must be in 1..65535, got {a.port}")
        from .server import serve

        service = _service(study, a.db)
        service.method(0)  # loads a checkpoint now, so a missing one fails before any link is sent
        shown = "localhost" if a.host in ("127.0.0.1", "::1") else a.host
        for pid, token in service.store.ensure_participants(a.participants):
            print(f"participant {pid}: http://{shown}:{a.port}/?t={token}")
        print(f"log: {service.store.path}", flush=True)
        serve(service, a.host, a.port)
        return 0
    service = _service(study, a.db)
    if a.command == "export":
        from .export import export

        for path in export(service, a.out):
            print(path)
        return 0
    if a.command == "fit-effort":
        from .effort_fit import fit_effort, write_effort_file

        fit = fit_effort(service.store.events(), study, n_boot=a.n_boot, seed=a.seed)
        write_effort_file(fit, Path(a.out))
        print(f"effort file: {a.out}")
        for key, value in fit["effort"].items():
            print(f"  {key}: {value:.3f} s")
        return 0
    from .replay import replay_check

    n, bad = replay_check(service)
    for line in bad:
        print(line)
    print(f"{n} actions replayed, {len(bad)} mismatches")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
