"""Social-xLSTM: traffic forecasting from detector networks, assembled from plugins by TOML recipes.

One sub-package a stage of the flow: ``recipe`` → ``data`` → ``model`` → ``training`` → ``experiments``, with the
plugin host (``host``: hooks, registry, construction, scaffold) that the recipe and the model find plugins
through. Below them: the plugin contracts (``api``, ``heads``, ``graph``, ``sequence``) and what every stage
shares (``errors``, ``io``); above them the command lines (``run``, ``plugins``, ``compare``, ``predict``;
``python -m core.data`` too). The layers, who may import whom, are declared once, in ``setup.cfg``'s
``[importlinter]`` contracts, and checked by ``lint-imports`` in CI.
"""
