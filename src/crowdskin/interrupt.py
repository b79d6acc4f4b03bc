"""Ctrl-C, as a terminal sends it: SIGINT to the whole process group, Snakemake and every job.

A job of ours that waits on the warm training worker, or trains in its own process, would end in a
KeyboardInterrupt traceback, and the client of the warm worker writes it to the terminal (its stderr is
Snakemake's). Instead the job notes one line in its log and dies by SIGINT, as an interrupted program
should, so that Snakemake reports it as interrupted. Snakemake itself cancels its jobs and reports
each; after all of that, the run's last line says what was stopped and the command that resumes it.
Standard library only: the warm worker's client imports this before anything heavy.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import shlex
import signal
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

RESUME_OPTION = "--rerun-incomplete"
NAMED_JOBS = 3  # more would not fit one line


def resume_command(argv: Sequence[str]) -> str:
    """The interrupted command with `--rerun-incomplete`, quoted for a shell. The option goes first:
    after `--configfile a.yaml` or `--config k=v`, which take several values, a word could be read as one."""
    program = "snakemake" if not argv or Path(argv[0]).name == "__main__.py" else argv[0]
    arguments = list(argv[1:])
    if RESUME_OPTION not in arguments:
        arguments.insert(0, RESUME_OPTION)
    return shlex.join([program, *arguments])


def interrupt_message(jobs: Sequence[str], argv: Sequence[str]) -> str:
    """One line: which jobs Ctrl-C stopped, that their finished epochs are kept, and how to resume."""
    if jobs:
        named = ", ".join(jobs[:NAMED_JOBS]) + (f" and {len(jobs) - NAMED_JOBS} more" if len(jobs) > NAMED_JOBS
                                                else "")
        stopped = f"{len(jobs)} running job{'s' if len(jobs) != 1 else ''} ({named})"
    else:
        stopped = "the run"
    return (f"Stopped by Ctrl-C: {stopped}; training jobs keep their finished epochs. "
            f"Resume with: {resume_command(argv)}")


def job_label(job: Any) -> str:
    """`rule[wildcard=value, ...]` of a Snakemake job."""
    wildcards = ", ".join(f"{name}={value}" for name, value in dict(job.wildcards.items()).items())
    return f"{job.rule.name}[{wildcards}]" if wildcards else str(job.rule.name)


def _interrupted_jobs(workflow: Any) -> list[str]:
    """The jobs Snakemake was running or had just failed when interrupted; none where its scheduler
    (not a public interface) is not there to ask."""
    scheduler = getattr(workflow, "scheduler", None)
    jobs: Iterable[Any] = [*getattr(scheduler, "running", ()), *getattr(scheduler, "failed", ())]
    return sorted({job_label(job) for job in jobs})


def report_ctrl_c_at_exit(workflow: Any, argv: Sequence[str] = sys.argv) -> None:
    """In Snakemake's own process: a SIGINT is noted, then handled as before (KeyboardInterrupt, which
    Snakemake's scheduler turns into cancelling its jobs), and the message goes out at exit, after
    Snakemake's report, as the last line. Nothing changes for a run that is not interrupted."""
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set a signal handler
    previous = signal.getsignal(signal.SIGINT)
    noted = threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        if not noted.is_set():
            noted.set()
            atexit.register(lambda: print(interrupt_message(_interrupted_jobs(workflow), argv), file=sys.stderr,
                                          flush=True))
        if callable(previous):
            previous(signum, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)


def note_in_log(log_file: str | Path | None, message: str) -> None:
    """One line appended to a job's log (stderr where it has none)."""
    line = f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S} WARNING {message}\n"
    if not log_file:
        sys.stderr.write(line)
        return
    with open(log_file, "a", encoding="utf-8") as handle:
        handle.write(line)


@contextlib.contextmanager
def job_ends_quietly_on_ctrl_c(log_file: str | Path | None, what: str,
                               on_rerun: str = "resumes it from its last finished epoch") -> Iterator[None]:
    """A KeyboardInterrupt inside becomes one line in the job's log and death by SIGINT: no traceback,
    and the exit status says interrupted (the shell and Snakemake tell it from a failure)."""
    try:
        yield
    except KeyboardInterrupt:
        note_in_log(log_file, f"{what} stopped by Ctrl-C; `snakemake ... {RESUME_OPTION}` {on_rerun}")
        sys.stdout.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        raise  # not reached: SIGINT's default action ends the process
