"""``python -m core.run SUITE.toml``: a suite file's study worked on, a plain suite's (``suite``) or, with a
``[suite.search]`` table, a search's (``search``), in this process or in worker processes."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from core.errors import RecipeError
from core.experiments import search
from core.experiments.study import Train, default_storage, follow_launcher, launch_workers, open_storage, shown
from core.experiments.suite import Workers, load_suite, report_suite, suite_study, work_on_suite, worker_command


def run_suite(path: Path, cli_overrides: list[str], train: Train, options: Workers = Workers()) -> int:
    """Work on the suite's study (train its runs, or a search's trials and finalists) in this process, or in
    ``options.count`` worker processes; then report the finished runs in the suite's folder. Exit code 1 when a
    run failed or some are left."""
    suite, runs = load_suite(path, cli_overrides)
    name = options.study or suite.name
    folder = Path(suite.output_dir) / name
    found = None if suite.search is None else search.load(path, suite, runs[0], name, folder, cli_overrides)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RecipeError(
            f"{path}: [suite] output_dir = '{suite.output_dir}': cannot create {folder}: {error.strerror}"
        ) from None
    url = options.storage or default_storage(folder)
    storage = open_storage(url)
    if options.worker:
        print(f"=== worker {options.worker} (pid {os.getpid()}, {torch.get_num_threads()} threads) on {shown(url)}")
        follow_launcher()  # it stops when its launcher says so, or is gone
    if found is not None:
        return search.run(found, suite, storage, train, options)
    study = suite_study(path, storage, name, runs, folder)
    count = options.count or suite.parallel
    if count > 1 and not options.worker:
        print(f"=== suite {name}: {len(runs)} runs, study '{name}' in {shown(url)}")
        launch_workers(worker_command(path, cli_overrides, url, name), count, folder, lambda: [study])
    else:
        work_on_suite(study, runs, folder, train, f"suite {name}", options.worker > 0)
        if options.worker:
            return 0
    return report_suite(study, runs, folder, f"suite {name}", url)
