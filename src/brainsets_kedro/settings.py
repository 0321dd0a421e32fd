"""Project settings. For the Kedro defaults, see
https://docs.kedro.org/en/stable/configure/configuration_basics/#configuration"""

from brainsets_kedro.hooks import SaveReportOnFailure

# Hooks are executed in a Last-In-First-Out (LIFO) order.
HOOKS = (SaveReportOnFailure(),)

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # An environment (conf/<env>/parameters*.yml) overrides single keys of a
    # brainset's parameters instead of replacing the whole brainset block.
    "merge_strategy": {"parameters": "soft"},
}
