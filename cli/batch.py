"""Many inputs in one command: `vqcodec compress *.png`, `vqcodec compress DIR -o OUTDIR`, and the
same for `decompress`.

Each worker process (`-j N`, one by default) loads its models once and codes file after file;
a file that fails is reported with its error and skipped, the others go on; a summary line
ends the run, whose exit status is that of the first failure (0 when none failed).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import click

from vqcodec.errors import UsageError, VqcodecError

# work(source, output base) -> (output written, summary); raises VqcodecError for a bad file.
Work = Callable[[Path, Path], tuple[Path, str]]


@dataclass
class Outcome:
    src: Path
    out: Path | None
    summary: str | None
    error: str | None
    exit_code: int
    warnings: list[str]


def expand(sources: Iterable[Path], suffixes: set[str], output_dir: Path | None) -> list[tuple[Path, Path]]:
    """(input file, output base) for every file given and every file under a folder given
    (recursively, by suffix), the base beside the input or at the same relative place under
    `output_dir`."""
    jobs = []
    for source in sources:
        if source.is_dir():
            found = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
            jobs += [(p, (output_dir / p.relative_to(source)) if output_dir else p) for p in found]
        else:
            jobs.append((source, (output_dir / source.name) if output_dir else source))
    if not jobs:
        raise UsageError("no input files found")
    return jobs


def check_distinct(outputs: list[Path]) -> None:
    clashes = sorted(str(out) for out, n in Counter(outputs).items() if n > 1)
    if clashes:
        raise UsageError(f"several inputs would be written to {clashes[0]} (rename one, or give them separately)")


def _run_one(work: Work, src: Path, base: Path) -> Outcome:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            out, summary = work(src, base)
            outcome = Outcome(src, out, summary, None, 0, [])
        except VqcodecError as e:
            outcome = Outcome(src, None, None, str(e), e.exit_code, [])
        except Exception as e:  # noqa: BLE001 - one file's failure must not stop the others
            outcome = Outcome(src, None, None, f"unexpected error: {type(e).__name__}: {e}", 1, [])
    outcome.warnings = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    return outcome


def _worker_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run(jobs: list[tuple[Path, Path]], work: Work, workers: int, verb: str) -> int:
    """Code every job, `workers` processes at a time; returns the exit status."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), unit="file", disable=not sys.stderr.isatty(), leave=False)
    failures: list[Outcome] = []

    def report(outcome: Outcome) -> None:
        for message in outcome.warnings:
            bar.write(f"vqcodec: warning: {outcome.src}: {message}", file=sys.stderr)
        if outcome.error is None:
            bar.write(f"{outcome.src} -> {outcome.out}: {outcome.summary}", file=sys.stdout)
        else:
            failures.append(outcome)
            bar.write(f"vqcodec: error: {outcome.src}: {outcome.error}", file=sys.stderr)
        bar.update()

    if workers <= 1:
        for src, base in jobs:
            report(_run_one(work, src, base))
    else:
        threads = max(1, (os.cpu_count() or 1) // workers)
        # Spawned, not forked: a fork of a process whose OpenMP threads have run can hang.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, context, initializer=_worker_threads, initargs=(threads,)) as pool:
            for outcome in pool.map(_run_one, [work] * len(jobs), *zip(*jobs, strict=True)):
                report(outcome)
    bar.close()
    done = len(jobs) - len(failures)
    click.echo(f"{done} file{'s' * (done != 1)} {verb}, {len(failures)} failed", err=True)
    return failures[0].exit_code if failures else 0
