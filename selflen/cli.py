"""Command-line edge: validate the command before Hydra creates a run directory, set up logging, print errors
as one line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from operator import attrgetter
from pathlib import Path

from omegaconf import OmegaConf

from selflen.config import CONF_DIR, ConfigError, TrainConfig, to_config
from selflen.errors import Interrupted, SelflenError, install_stop_handlers

HYDRA_FLAGS_WITH_VALUE = {
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--info",
    "--experimental-rerun",
}


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("or_default"):
        OmegaConf.register_new_resolver("or_default", lambda value, default: value or default)


def task_overrides(argv: Sequence[str]) -> list[str]:
    """The ``key=value`` overrides of a command line, without Hydra's flags and ``hydra.*`` keys.

    >>> task_overrides(["-m", "model=tiny", "--cfg", "job", "hydra.run.dir=x", "iterations.count=2"])
    ['model=tiny', 'iterations.count=2']
    """
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in HYDRA_FLAGS_WITH_VALUE:
            skip = True
            continue
        if arg.startswith("-") or "=" not in arg:
            continue
        key = arg.split("=", 1)[0].lstrip("+~")
        if not key.startswith("hydra.") and key != "hydra":
            out.append(arg)
    return out


def _combinations(overrides: list[str]) -> list[list[str]]:
    """Expand sweep overrides (``model=a,b``) into the job combinations Hydra's basic sweeper would run."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra._internal.utils import create_config_search_path
    from hydra.core.override_parser.overrides_parser import OverridesParser

    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF_DIR)))  # for glob(*) sweeps
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(overrides)
    batches = BasicSweeper.split_arguments(parsed, None)
    return [list(combo) for batch in batches for combo in batch]


def precheck(argv: Sequence[str], config_name: str = "train") -> None:
    """Compose and validate every job of the command; raise ``ConfigError`` (one line) on the first bad value."""
    from hydra import initialize_config_dir

    register_resolvers()
    overrides = task_overrides(argv)
    combos = _combinations(overrides) if ("-m" in argv or "--multirun" in argv) else [overrides]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        for combo in combos[:256]:
            _compose_checked(combo, config_name)


def _compose_checked(overrides: Sequence[str], config_name: str = "train") -> TrainConfig:
    """One job's typed config, composed inside ``initialize_config_dir``; every problem is one ``ConfigError``."""
    from hydra import compose
    from hydra.errors import HydraException, MissingConfigException

    _check_group_values(overrides)
    try:
        raw = compose(config_name, overrides=list(overrides))
    except MissingConfigException as err:
        raise ConfigError(_missing_option(str(err))) from None
    except HydraException as err:
        raise ConfigError(_first_line(err)) from None
    raw.paths.root = raw.paths.run_dir = "."
    return to_config(raw, announce=False)


def _check_group_values(overrides: Sequence[str]) -> None:
    """A group given a value that is not one of its files (``iterations=3``) gets a line naming the options."""
    for item in overrides:
        key, _, value = item.lstrip("+~").partition("=")
        folder = CONF_DIR / key
        if folder.is_dir() and value not in ("", "null") and not (folder / f"{value}.yaml").exists():
            options = sorted(p.stem for p in folder.glob("*.yaml"))
            hint = f" (a count: {key}.count={value})" if key == "iterations" else ""
            raise ConfigError(f"{key}={value!r} is not a known option; choose one of {', '.join(options)}{hint}")


def _first_line(err: BaseException) -> str:
    while err is not None and not str(err).strip():
        err = err.__cause__
    return str(err).strip().splitlines()[0] if err is not None else "invalid configuration"


def _missing_option(message: str) -> str:
    """Hydra's multi-line 'Could not find' message as one line naming the group, value and the options."""
    import re

    first = message.splitlines()[0]
    m = re.search(r"Could not (?:find|load) '([^']+)/([^'/]+)'", first)
    if not m:
        return first
    group, value = m.group(1), m.group(2)
    folder = CONF_DIR / group
    options = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
    return f"{group}={value!r} is not a known option; choose one of {', '.join(options) or '(none)'}"


def knob_listing(argv: Sequence[str]) -> str:
    """``python train.py --knobs [OVERRIDES] [PREFIX ...]``: each knob (or each under a prefix such as ``length``)
    with its type, its value in the config the overrides compose, what it allows and what it means, all read from
    its field (``groups.knob``)."""
    from hydra import initialize_config_dir

    from selflen.config import CHOICES, NULLABLE, RANGES
    from selflen.groups import describe, knobs

    register_resolvers()
    prefixes = tuple(a.rstrip(".") for a in argv if not a.startswith("-") and "=" not in a)
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = _compose_checked(task_overrides(argv))
    lines = []
    for key, kind, f in knobs(TrainConfig):
        if prefixes and not any(key == p or key.startswith(p + ".") for p in prefixes):
            continue
        shown = json.dumps(attrgetter(key)(cfg), ensure_ascii=False)
        allowed = f"in {describe(RANGES[key])}" if key in RANGES else ""
        allowed = f"one of {' | '.join(CHOICES[key])}" if key in CHOICES else allowed
        if allowed and key in NULLABLE:
            allowed += " or null"
        kind = getattr(kind, "__name__", None) if isinstance(kind, type) else str(kind).replace("typing.", "")
        head = f"{key}: {kind} = {shown if len(shown) <= 60 else shown[:57] + '...'}"
        lines += [f"{head}, {allowed}" if allowed else head, f"    {f.metadata['help']}"]
    return "\n".join(lines)


def precheck_or_exit(argv: Sequence[str]) -> None:
    if any(a in ("--help", "-h", "--hydra-help", "--info", "-i", "--shell-completion", "-sc") for a in argv):
        return
    try:
        precheck(argv)
    except ConfigError as err:
        print(f"selflen: config error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    problem = run_dir_problem(argv)
    if problem:
        print(f"selflen: error: {problem}", file=sys.stderr)
        raise SystemExit(1)


def run_dir_problem(argv: Sequence[str]) -> str | None:
    """Why the run directory of a single run cannot be created (before Hydra tries and prints a traceback).

    >>> run_dir_problem(["hydra.run.dir=/proc/version/run"]).startswith("cannot create the run directory")
    True
    """
    if "-m" in argv or "--multirun" in argv:
        return None
    given = [a.split("=", 1)[1] for a in argv if a.startswith("hydra.run.dir=")]
    target = Path(given[-1]).expanduser() if given else Path("outputs")
    target = target if target.is_absolute() else Path.cwd() / target
    probe = target
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.is_dir() and os.access(probe, os.W_OK | os.X_OK):
        return None
    why = "not a directory" if not probe.is_dir() else "permission denied"
    return f"cannot create the run directory {target}: {probe} is {why}; choose another hydra.run.dir"


def setup_logging() -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("selflen").setLevel(logging.INFO)


def report_error(err: SelflenError) -> int:
    """Print a known error as one line on stderr; return the exit code (128+signal for a stop, else 1)."""
    last = getattr(err, "last_done", None)
    if sys.stderr.isatty():
        print(file=sys.stderr)  # off a progress bar the stop cut short
    if isinstance(err, Interrupted):
        done = f"last finished stage: {last}" if last else "no stage finished yet"
        print(f"selflen: {err} during {getattr(err, 'stage', 'setup')} ({done}; every record written is kept); "
              "re-run the same command to resume", file=sys.stderr)
        return err.exit_code
    print(f"selflen: error: {_one_line(str(err))}", file=sys.stderr)
    return 1


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "unknown error"


HYDRA_OWN = {".hydra", "multirun.yaml"}
"""What Hydra writes into a run or sweep folder before the job runs (besides the job's ``<name>.log``)."""


def existing_anchors(argv: Sequence[str], cwd: Path | None = None) -> set[Path]:
    """The folders that exist before Hydra makes the run (or sweep) folder: the nearest existing ancestor of each
    place the command may write to. A refused start removes what it made up to these, never beyond."""
    cwd = cwd or Path.cwd()
    places = [cwd / "outputs" / "x", cwd / "multirun" / "x"]
    given = ("hydra.run.dir=", "hydra.sweep.dir=")
    places += [Path(a.split("=", 1)[1]).expanduser() for a in argv if a.startswith(given)]
    anchors = set()
    for place in places:
        place = place if place.is_absolute() else cwd / place
        while not place.exists() and place != place.parent:
            place = place.parent
        anchors.add(place.resolve())
    return anchors


def fresh_run_dir(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds only what Hydra wrote for this start (``.hydra/``, the job's log): a new folder,
    or the leftover of a start that was refused before."""
    return all(p.name in HYDRA_OWN or p.suffix == ".log" for p in run_dir.iterdir())


def remove_refused(run_dir: Path, anchors: set[Path]) -> None:
    """A start refused before its first stage leaves no new folder: close the job's log files in ``run_dir``, delete
    it, then each parent left empty (or holding only Hydra's ``multirun.yaml``) up to the first of ``anchors``."""
    import shutil

    for handler in list(logging.root.handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == run_dir:
            handler.close()
            logging.root.removeHandler(handler)
    shutil.rmtree(run_dir, ignore_errors=True)
    folder = run_dir.parent
    while folder not in anchors and folder != folder.parent and folder.is_dir():
        if any(p.name not in HYDRA_OWN for p in folder.iterdir()):
            break
        shutil.rmtree(folder, ignore_errors=True)
        folder = folder.parent


def _run_dir() -> Path | None:
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir).resolve()
    except Exception:  # outside a Hydra job
        return None


def main() -> None:
    """``python train.py`` and the console entry point ``selflen-train``: validate the command, then let Hydra
    compose the config shipped inside the package (``selflen/conf``) and run the loop. A start refused before it
    claims its run folder (a model that cannot be had, missing benchmarks, a bad ``paths.fork_from``) leaves no new
    folder; a folder another start holds is never touched."""
    import hydra
    from omegaconf import DictConfig

    from selflen.env import legacy_online_note

    register_resolvers()
    if "--knobs" in sys.argv[1:]:
        try:
            print(knob_listing(sys.argv[1:]))
        except ConfigError as err:
            print(f"selflen: config error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        return
    if note := legacy_online_note():
        print(f"selflen: warning: {note}", file=sys.stderr)
    precheck_or_exit(sys.argv[1:])
    anchors = existing_anchors(sys.argv[1:])

    @hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
    def _job(raw: DictConfig) -> float:
        from selflen.pipeline import run
        from selflen.report.summary import format_summary

        setup_logging()
        cfg = to_config(raw)
        install_stop_handlers()
        run_dir = _run_dir()
        fresh = run_dir is not None and run_dir.is_dir() and fresh_run_dir(run_dir)
        try:
            summary = run(cfg)
        except SelflenError as err:
            code = report_error(err)
            sys.stderr.flush()
            if fresh and getattr(err, "claimed", True) is False and run_dir.is_dir() and fresh_run_dir(run_dir):
                remove_refused(run_dir, anchors)  # refused before the run claimed its folder (no lock, no stage)
            raise SystemExit(code) from None
        print(format_summary(summary))
        return float(summary.get("objective") or 0.0)  # a sweeper can optimise this

    _job()


def train_main() -> None:
    """Console entry point ``selflen-train``."""
    main()
