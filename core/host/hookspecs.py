"""The one hook a Social-xLSTM plugin implements.

A plugin is a module (or object) with a function decorated by ``hookimpl``::

    from social_xlstm import hookimpl

    @hookimpl
    def register_plugins(register):
        register(MyEncoder)

Built-ins, installed packages (entry-point group ``social_xlstm``) and modules named in a recipe's
``[plugins] modules`` are all found through this hook.
"""

from __future__ import annotations

import pluggy

PROJECT = "social_xlstm"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_plugins(register) -> None:
    """Call ``register(cls)`` once for each plugin class the module provides.

    ``cls`` subclasses one of ``social_xlstm.Encoder``, ``Pooling``, ``Collator`` or ``Head``, has a unique ``name``
    within its kind and, if it has options, an attrs ``Config`` class that validates its recipe table.
    """
