"""Social-xLSTM: traffic forecasting from detector networks, assembled from plugins by TOML recipes.

One sub-package a stage of the flow, each importing only the stages before it: ``recipe`` → ``data`` → ``model`` →
``training`` → ``experiments`` (one exception: the recipe's ``[data]`` options are ``data.config.DataConfig``).
Beside them: the plugin contracts (``api``, ``hookspecs``, ``sequence``), what every stage shares (``errors``,
``io``) and the command lines (``run``, ``plugins``, ``compare``, ``predict``; ``python -m core.data`` too).
"""
