"""Building a plugin: the class a recipe names, instantiated with its validated config, any failure named."""

from __future__ import annotations

from core.errors import PluginError, RecipeError, SocialXLSTMError
from core.host.registry import PluginChoice, Registry


def construct(registry: Registry, kind: str, choice: PluginChoice, *args, where: str = ""):
    """The plugin ``choice`` of ``kind`` built as ``cls(config, *args)``: any failure, or an encoder that sets no
    positive int ``out_dim``, is a ``PluginError`` naming the plugin and its source; a ``RecipeError`` (a setting
    that does not fit the data) names the recipe ``where`` and the table."""
    info = registry.get(kind, choice.name)
    named = f"{kind} '{choice.name}' ({info.source})"
    try:
        plugin = info.cls(choice.config, *args)
    except RecipeError as error:
        raise RecipeError(f"{where + ': ' if where else ''}[{kind}] ({choice.name}): {error}") from None
    except SocialXLSTMError:
        raise
    except Exception as error:  # noqa: BLE001 - a third-party plugin may raise anything
        raise PluginError(f"{named} failed to build: {type(error).__name__}: {error}") from error
    out_dim = getattr(plugin, "out_dim", None)
    if kind == "encoder" and (not isinstance(out_dim, int) or isinstance(out_dim, bool) or out_dim <= 0):
        raise PluginError(
            f"{named} built without a valid 'out_dim' ({out_dim!r}): its __init__ must set self.out_dim = E, "
            "the size of its states"
        )
    return plugin
