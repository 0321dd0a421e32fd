"""The project's pipelines: one folder each (brainsets and ordinary Kedro pipelines).

Importing this package lets each brainset import the modules of its own folder by
their bare names, without clashing with another brainset's (see
:mod:`brainsets_kedro.upstream.siblings`).
"""

from brainsets_kedro.upstream.siblings import install

install()
