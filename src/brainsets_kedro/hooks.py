"""Project hooks.

They import the brainset machinery (and with it pandas) when they first run, not when
settings.py imports them: every kedro command imports settings.py, and ``kedro run``
starts its worker processes before it loads pandas (see :mod:`brainsets_kedro.prestart`).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import CatalogProtocol
from kedro.pipeline import Node

from brainsets_kedro.errors import UsageError
from brainsets_kedro.params import run_options

logger = logging.getLogger(__name__)


class SaveReportOnFailure:
    """Save a brainset's run report even when some of its assets failed.

    The process node fails with :class:`AssetFailures`, so Kedro does not save its
    output; the report rides on the error and is saved here.
    """

    @hook_impl
    def on_node_error(
        self, error: Exception, node: Node, catalog: CatalogProtocol
    ) -> None:
        from brainsets_kedro.nodes import AssetFailures  # noqa: PLC0415

        if isinstance(error, AssetFailures):
            for output in node.outputs:
                catalog.save(output, error.report)


class RerunFailed:
    """``brainsets.only=failed``: each brainset's download node gets, instead, the
    list of the assets that were not DONE in its last run report (failed or
    interrupted)."""

    @hook_impl
    def before_node_run(
        self, node: Node, catalog: CatalogProtocol, inputs: dict[str, Any]
    ) -> dict[str, Any] | None:
        from brainsets_kedro.nodes import DownloadNode  # noqa: PLC0415
        from brainsets_kedro.selection import shown_ids  # noqa: PLC0415

        owner = getattr(node.func, "__self__", None)
        owner = getattr(owner, "node", owner)  # the runner's wrapper of the node
        parameters = inputs.get("parameters")
        if not isinstance(owner, DownloadNode) or parameters is None:
            return None
        if str(run_options(parameters).get("only")).strip() != "failed":
            return None
        brainset_id = owner.brainset_id
        report_name = f"{brainset_id}.run_report"
        if not catalog.exists(report_name):
            raise UsageError(
                f"brainsets.only=failed: brainset '{brainset_id}' has no run report "
                f"yet ({report_name}); run it once without brainsets.only first."
            )
        report = catalog.load(report_name)
        failed = [str(i) for i in report.index[report["status"] != "DONE"]]
        logger.info(
            "brainsets.only=failed: %d asset(s) of '%s' were not done in the last "
            "run: %s.",
            len(failed),
            brainset_id,
            shown_ids(failed),
        )
        parameters = copy.deepcopy(parameters)
        parameters["brainsets"]["only"] = failed
        return {"parameters": parameters}
