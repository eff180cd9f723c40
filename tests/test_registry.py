"""The name → object registry behind tasks and tuning methods."""

from __future__ import annotations

import pytest

from taskfit.errors import ConfigError
from taskfit.methods import METHODS, Method
from taskfit.registry import Registry
from taskfit.tasks import TASKS, Task


def test_miss_lists_available_names() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("beta")(2)
    reg.register("alpha")(1)
    with pytest.raises(ConfigError) as info:
        reg.get("gamma")
    msg = str(info.value)
    assert "Unknown widget 'gamma'" in msg
    assert "Available: alpha, beta." in msg  # sorted


def test_miss_on_empty_registry_says_none() -> None:
    with pytest.raises(ConfigError, match=r"\(none\)"):
        Registry("widget").get("x")


def test_register_returns_object_and_lookup_finds_it() -> None:
    reg: Registry[object] = Registry("widget")
    sentinel = object()
    assert reg.register("w")(sentinel) is sentinel
    assert reg.get("w") is sentinel
    assert "w" in reg and "v" not in reg
    assert list(reg) == reg.names() == ["w"]


def test_duplicate_registration_raises() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("w")(1)
    with pytest.raises(RuntimeError, match="registered twice"):
        reg.register("w")(2)
    assert reg.get("w") == 1  # the first registration is kept


def test_builtin_methods_registered() -> None:
    assert {"full", "frozen", "lora"} <= set(METHODS.names())
    for name in METHODS.names():
        method = METHODS.get(name)
        assert isinstance(method, Method)
        # The config's discriminator default is the registry name (the recipe's method union relies on it).
        assert method.config_cls().name == name
        assert method.description


def test_builtin_task_registered() -> None:
    assert "text_classification" in TASKS
    task_cls = TASKS.get("text_classification")
    assert issubclass(task_cls, Task)
    assert task_cls.name == "text_classification"


def test_registry_miss_is_config_error_for_methods() -> None:
    with pytest.raises(ConfigError) as info:
        METHODS.get("nope")
    for name in ("full", "frozen", "lora"):
        assert name in str(info.value)
