"""Social-xLSTM: traffic forecasting from detector networks, assembled from plugins by TOML recipes.

One sub-package a stage of the flow: ``recipe`` → ``data`` → ``model`` → ``training`` → ``experiments``, with the
plugin host (``host``: hooks, registry, construction, scaffold) that the recipe and the model find plugins
through. Below them: the plugin contracts (``api``, ``heads``, ``graph``, ``sequence``) and what every stage
shares (``errors``, ``io``); above them the command lines (``run``, ``plugins``, ``compare``, ``predict``;
``python -m core.data`` too). The layers, who may import whom, are declared once, in ``setup.cfg``'s
``[importlinter]`` contracts, and checked by ``lint-imports`` in CI.
"""

import os

# PyTorch backs each CPU tensor of 2 MB or more with transparent huge pages when this is set before its first such
# tensor: a large network's step allocates tensors of tens of MB, whose 4 KB pages the kernel otherwise faults in
# one at a time (docs/performance.md, "Scale"). ``THP_MEM_ALLOC_ENABLE=0`` in the environment keeps PyTorch's default.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
