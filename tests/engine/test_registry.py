"""Registry: decorator registration, duplicate names refused, unknown names answered with the known ones."""
from __future__ import annotations

import pytest

from engine.registry import Registry


def test_register_get_and_errors():
    reg = Registry("widget")

    @reg.register()
    class Alpha:
        pass

    @reg.register(name="beta")
    class Other:
        pass

    assert reg.get("Alpha") is Alpha and reg.get("beta") is Other and "Alpha" in reg
    assert reg.registered_names() == ["Alpha", "beta"] and list(reg) == [("Alpha", Alpha), ("beta", Other)]
    reg.register()(Alpha)  # the same class again is harmless (modules imported twice)
    with pytest.raises(KeyError, match="two widgets are registered as 'Alpha'"):
        reg.register(name="Alpha")(Other)
    with pytest.raises(KeyError, match="No widget is registered as 'Gamma'. Registered widgets: Alpha, beta"):
        reg.get("Gamma")
