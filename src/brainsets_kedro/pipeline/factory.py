"""BrainsetPipeline class -> Kedro pipeline.

Every brainset becomes the same static pipeline of four nodes in the namespace
``<brainset_id>``, whatever its manifest holds::

    <id>.raw_dir, params:<id>, params:brainsets -> [<id>.manifest] -> <id>.manifest
    <id>.manifest, <id>.raw_dir, <id>.processed_dir, params:<id>, params:brainsets
        -> [<id>.download] -> <id>.downloads
    <id>.downloads, <id>.raw_dir, <id>.processed_dir, params:<id>, params:brainsets
        -> [<id>.process] -> <id>.run_report
    <id>.run_report, <id>.processed_dir -> [<id>.describe] -> <id>.card

A node takes its brainset's own parameters and the run-level ones, never the whole
``parameters``: kedro-viz shows each brainset with its own, and a node's inputs say
what it depends on. Building it never calls ``get_manifest``: the manifest is
computed at run time.
"""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from brainsets_kedro.brainset import BrainsetPipeline
from brainsets_kedro.pipeline.card import DescribeNode
from brainsets_kedro.pipeline.nodes import (
    BRAINSET_TAG,
    DownloadNode,
    ManifestNode,
    ProcessNode,
)
from brainsets_kedro.pipeline.run_settings import RUN_OPTIONS


def dataset_names(brainset_id: str) -> dict[str, str]:
    """The catalog names of a brainset's datasets."""
    return {
        name: f"{brainset_id}.{name}"
        for name in (
            "raw_dir",
            "processed_dir",
            "manifest",
            "downloads",
            "run_report",
            "card",
        )
    }


def create_brainset_pipeline(pipeline_cls: type[BrainsetPipeline]) -> Pipeline:
    """The Kedro pipeline that prepares the brainset of ``pipeline_cls``."""
    brainset_id = pipeline_cls.brainset_id
    ds = dataset_names(brainset_id)
    manifest = ManifestNode(pipeline_cls)
    params = {"params": f"params:{brainset_id}", "run_options": RUN_OPTIONS}
    manifest_inputs = {"raw_dir": ds["raw_dir"], **params}
    if manifest.takes_processed_dir:
        manifest_inputs["processed_dir"] = ds["processed_dir"]
    asset_inputs = {
        "raw_dir": ds["raw_dir"],
        "processed_dir": ds["processed_dir"],
        **params,
    }
    return Pipeline(
        [
            node(
                manifest,
                inputs=manifest_inputs,
                outputs=ds["manifest"],
                name="manifest",
                namespace=brainset_id,
                tags=[BRAINSET_TAG],
            ),
            node(
                DownloadNode(pipeline_cls),
                inputs={"manifest": ds["manifest"], **asset_inputs},
                outputs=ds["downloads"],
                name="download",
                namespace=brainset_id,
                tags=[BRAINSET_TAG],
            ),
            node(
                ProcessNode(pipeline_cls),
                inputs={"downloads": ds["downloads"], **asset_inputs},
                outputs=ds["run_report"],
                name="process",
                namespace=brainset_id,
                tags=[BRAINSET_TAG],
            ),
            node(
                DescribeNode(pipeline_cls).describe,
                inputs={
                    "run_report": ds["run_report"],
                    "processed_dir": ds["processed_dir"],
                },
                outputs=ds["card"],
                name="describe",
                namespace=brainset_id,
                tags=[BRAINSET_TAG],
            ),
        ]
    )
