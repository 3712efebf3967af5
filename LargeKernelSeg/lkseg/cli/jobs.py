"""``lkseg jobs list|status|cancel|resume``: background fine-tuning jobs (:mod:`lkseg.jobs`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lkseg.errors import LkSegError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("jobs", help="list, inspect, cancel or resume background fine-tuning jobs")
    actions = p.add_subparsers(dest="jobs_command", metavar="ACTION")
    a = actions.add_parser("list", help="job folders under ROOT and their state")
    a.add_argument("root", nargs="?", type=Path, help="folder holding job folders (default $LKSEG_HOME/jobs "
                   "or ~/.lkseg/jobs)")
    a.set_defaults(func=_list)
    for name, func, text in (("status", _status, "state, progress and best checkpoint of a job"),
                             ("cancel", _cancel, "stop a job and all its processes"),
                             ("resume", _resume, "restart a stopped job; training continues from its last checkpoint")):
        a = actions.add_parser(name, help=text)
        a.add_argument("job_dir", type=Path, help="the job folder")
        if name == "status":
            a.add_argument("--json", action="store_true", help="print the status as JSON")
        a.set_defaults(func=func)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _progress_text(status: dict) -> str:
    row = status.get("progress") or {}
    parts = []
    if row.get("step") is not None:
        parts.append(f"step {row['step']}")
    if row.get("loss") is not None:
        parts.append(f"loss {float(row['loss']):.4f}")
    if row.get("val_dice") is not None:
        parts.append(f"val Dice {float(row['val_dice']):.3f}")
    if row.get("eta_s") is not None:
        parts.append(f"ETA {float(row['eta_s']):.0f} s")
    return ", ".join(parts)


def _list(args: argparse.Namespace) -> int:
    from lkseg import jobs

    root = args.root or jobs.default_root()
    if root is not None and Path(root).exists() and not Path(root).is_dir():
        raise LkSegError(f"{root} is a file; give the folder that holds job folders")
    found = jobs.list_jobs(root)
    if not found:
        print(f"no jobs under {root}")
        return 0
    for folder, status in found:
        print(f"{status.get('state', '?'):<10} {status.get('updated') or '':<26} {folder}  {_progress_text(status)}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from lkseg import jobs

    status = jobs.job_status(args.job_dir)
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"job      {status['job_dir']}")
    print(f"state    {status.get('state')}  (pid {status.get('pid')}, started {status.get('started')}, "
          f"updated {status.get('updated')})")
    text = _progress_text(status)
    if text:
        print(f"progress {text}")
    if status.get("best"):
        print(f"best     {status['best']}")
    if status.get("error"):
        print(f"error    {status['error']}")
    return 1 if status.get("state") == "failed" else 0


def _cancel(args: argparse.Namespace) -> int:
    from lkseg import jobs

    status = jobs.cancel_job(args.job_dir)
    print(f"{status['job_dir']}: {status.get('state')}")
    return 0


def _resume(args: argparse.Namespace) -> int:
    from lkseg import jobs

    folder = jobs.resume_job(args.job_dir)
    print(f"resumed {folder}; watch it with: lkseg jobs status {folder}")
    return 0
