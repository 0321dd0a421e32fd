"""Project hooks."""

from __future__ import annotations

from kedro.framework.hooks import hook_impl
from kedro.io import CatalogProtocol
from kedro.pipeline import Node

from brainsets_kedro.nodes import AssetFailures


class SaveReportOnFailure:
    """Save a brainset's run report even when some of its assets failed.

    The process node fails with :class:`AssetFailures`, so Kedro does not save its
    output; the report rides on the error and is saved here.
    """

    @hook_impl
    def on_node_error(
        self, error: Exception, node: Node, catalog: CatalogProtocol
    ) -> None:
        if isinstance(error, AssetFailures):
            for output in node.outputs:
                catalog.save(output, error.report)
