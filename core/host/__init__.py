"""The plugin host: how plugins are found, validated and built.

``hookspecs`` (the one hook a plugin implements), ``registry`` (built-ins, installed packages' entry points and
recipe modules, by kind and name), ``options`` (a plugin's attrs ``Config`` validated from its recipe table, and
described), ``construct`` (a plugin built, any failure named) and ``scaffold`` (``python -m core.plugins new``).
The recipe and the model find their plugins here. What sits above them is public or a command line: the
contracts plugins implement (``core.api``, ``core.heads``, exported by ``social_xlstm``), the conformance kit
(``social_xlstm.testing``, which builds forecasters around a plugin) and ``python -m core.plugins``.
"""
