"""Kedro's project settings: Ctrl-C at start-up, Arrow's allocator, the hooks, the console handlers, the config loader.

For the Kedro defaults, see
https://docs.kedro.org/en/stable/configure/configuration_basics/#configuration"""

import warnings

from brainsets_kedro.signals import exit_on_ctrl_c_until_run

# First: Ctrl-C from here until the run command's own code is one line, not a
# traceback (see brainsets_kedro.signals).
exit_on_ctrl_c_until_run()

from brainsets_kedro.framework.memory import arrow_memory_from_jemalloc  # noqa: E402

arrow_memory_from_jemalloc()  # before anything imports pandas (see its docstring)

from brainsets_kedro.framework.hooks import (  # noqa: E402
    BrainsetParameters,
    LockBrainsets,
    RerunFailed,
    SaveReportOnFailure,
)
from brainsets_kedro.framework.logs import setup_console  # noqa: E402

# Kedro 1.7's config loader calls an OmegaConf API that newer OmegaConf releases
# deprecate; the warning is Kedro's to fix and says nothing about this project.
warnings.filterwarnings(
    "ignore", message=r"register_new_resolver\(\) is deprecated", category=UserWarning
)
# kedro-viz's code warns about APIs of its own dependencies (FastAPI's ORJSONResponse)
# on `kedro viz`: also kedro-viz's to fix.
warnings.filterwarnings("ignore", message=r".* is deprecated", module=r"kedro_viz\.")

# The console handlers of conf/logging.yml: Rich on a terminal, one line per record
# elsewhere (see brainsets_kedro.framework.logs).
setup_console()

# Hooks are executed in a Last-In-First-Out (LIFO) order: a brainset's lock is
# taken before its other hooks run.
HOOKS = (BrainsetParameters(), SaveReportOnFailure(), RerunFailed(), LockBrainsets())

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # An environment (conf/<env>/parameters*.yml) overrides single keys of a
    # brainset's parameters instead of replacing the whole brainset block.
    "merge_strategy": {"parameters": "soft"},
}
