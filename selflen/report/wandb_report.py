"""An optional W&B Report over the compared runs (``wandb-workspaces``), created only when W&B is online.

The Markdown report and plots never depend on it: offline, without an API key, without the package, or on any
W&B API error it is skipped with a one-line note.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from selflen.report.runs import Run

log = logging.getLogger(__name__)
LINE_PLOTS = (["generate/mean_words", "extend/mean_words", "select/mean_words"], ["extend/accept_rate"],
              ["eval/mean_words"], ["eval/finish/length_rate"])


def wandb_online() -> tuple[bool, str]:
    """Whether a W&B Report can be created, and why not."""
    if os.environ.get("WANDB_MODE", "").lower() != "online":
        return False, "WANDB_MODE is not 'online'"
    if os.environ.get("WANDB_API_KEY"):
        return True, "online"
    try:
        import netrc

        if netrc.netrc().authenticators("api.wandb.ai"):
            return True, "online"
    except (OSError, netrc.NetrcParseError):
        pass
    return False, "no W&B API key (WANDB_API_KEY or `wandb login`)"


def wandb_report(runs: Sequence[Run], title: str, markdown: str) -> str | None:
    """Create a W&B Report over the runs' W&B runs (ids from ``<run>/wandb_id``); returns its URL or None."""
    ok, why = wandb_online()
    if not ok:
        log.info("W&B report skipped: %s (the Markdown report and plots are complete without it)", why)
        return None
    try:
        import wandb_workspaces.reports.v2 as wr
    except ImportError:
        log.info("W&B report skipped: `pip install wandb-workspaces` to create reports programmatically")
        return None
    ids = [(r.path / "wandb_id").read_text().strip() for r in runs if (r.path / "wandb_id").is_file()]
    if not ids:
        log.info("W&B report skipped: none of the runs logged to W&B (no wandb_id file)")
        return None
    project = runs[0].config.get("logger.project") or "selflen"
    entity = runs[0].config.get("logger.entity") or None
    try:
        runset = _runset(wr, entity, project, ids)
        panels = [wr.LinePlot(x="iteration", y=list(keys)) for keys in LINE_PLOTS]
        report = wr.Report(project=project, entity=entity, title=title,
                           description=f"{len(runs)} runs compared by selflen.report.compare",
                           blocks=[wr.PanelGrid(runsets=[runset], panels=panels), wr.MarkdownBlock(text=markdown)])
        report.save()
        log.info("W&B report: %s", report.url)
        return str(report.url)
    except Exception as err:  # the report is an extra; a W&B API change must not fail the comparison
        log.warning("W&B report not created (%s: %s)", type(err).__name__, err)
        return None


def _runset(wr: Any, entity: str | None, project: str, ids: Sequence[str]) -> Any:
    """A runset restricted to the compared runs' ids where this wandb-workspaces version allows it."""
    try:
        import wandb_workspaces.workspaces as ws

        return wr.Runset(entity=entity, project=project, name="compared runs", filters=[ws.Metric("ID").isin(ids)])
    except Exception:  # older versions: string filter expressions
        return wr.Runset(entity=entity, project=project, name="compared runs", filters=f"ID in {list(ids)}")
