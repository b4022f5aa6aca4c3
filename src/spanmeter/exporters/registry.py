"""The exporter types spanmeter knows: each registers itself from its own module.

Like the OpenTelemetry Collector's factories: a type id, a config model (its default config) and a
create function. A module of the `spanmeter.exporters` package registers its type when imported:

    TYPE = register("webhook", WebhookConfig, create)

and every module of the package is imported the first time the types are needed, so adding a type
is adding one module; nothing else names it. Config keys are `type` or `type/name`
(`webhook/billing`); the config is validated by the type's model.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from spanmeter.exporters.base import Exporter
from spanmeter.exporters.settings import ExporterConfig

C = TypeVar("C", bound=ExporterConfig)
Create = Callable[[str, Any], Exporter]  # (exporter id, its config) -> the exporter


@dataclass(frozen=True)
class ExporterType(Generic[C]):
    name: str  # the type id: the part of an exporter id before "/"
    config: type[C]
    create: Callable[[str, C], Exporter]


_types: dict[str, ExporterType[Any]] = {}
_discovered = False
_lock = threading.Lock()


def register(name: str, config: type[C], create: Callable[[str, C], Exporter]) -> ExporterType[C]:
    """Make the type `name` known; called once, at import time, by the type's own module."""
    if not name.isidentifier() or name != name.lower():
        raise ValueError(f"exporter type {name!r}: use a lower-case identifier such as 'webhook'")
    found = _types.get(name)
    if found is not None and (found.config is not config or found.create is not create):
        raise ValueError(f"exporter type {name!r} is registered twice")
    exporter_type = ExporterType(name, config, create)
    _types[name] = exporter_type
    return exporter_type


def exporter_types() -> dict[str, ExporterType[Any]]:
    """Every registered type by id, after importing each module of the exporters package."""
    global _discovered
    with _lock:
        if not _discovered:
            import spanmeter.exporters as package

            for module in pkgutil.iter_modules(package.__path__):
                if not module.name.startswith("_"):
                    importlib.import_module(f"{package.__name__}.{module.name}")
            _discovered = True
    return dict(sorted(_types.items()))


def type_of(exporter_id: str) -> ExporterType[Any] | None:
    """The type of `webhook/billing` (or `webhook`); None when no such type is registered."""
    return exporter_types().get(exporter_id.split("/", 1)[0])


def create(exporter_id: str, config: ExporterConfig) -> Exporter:
    exporter_type = type_of(exporter_id)
    if exporter_type is None:  # the config was validated against the same registry
        raise KeyError(exporter_id)
    return exporter_type.create(exporter_id, config)
