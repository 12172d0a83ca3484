"""What every Lantu process is: a pygeoapi process plugin (``BaseProcessor`` with its OGC process
description) that also knows how to check its inputs before a job exists and how to run next to the data.

Execution is split in two so that bad input never reaches the queue:

* ``validate(inputs, env)`` runs in the request, turns the execute request's inputs into plain JSON (site
  geometry parsed, transformed to EPSG:4490 and checked; layer ids and rule sets resolved) or raises
  ``InvalidInput`` naming the input — a 400 before any job is queued;
* ``run(inputs, ctx)`` runs in the request (sync) or in a ``lantu worker`` (async) and returns the outputs,
  reporting progress through ``ctx.progress`` (which is also where a dismissed job stops).

``execute()`` keeps the plain pygeoapi contract, so the same classes also work inside a stock pygeoapi.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from pygeoapi.process.base import BaseProcessor

from lantu.config.registry import Registry
from lantu.config.settings import Settings
from lantu.processes.jobs import Output
from lantu.providers.pool import Pool


class InvalidInput(ValueError):
    """An input the process cannot accept; ``name`` is the input's id (the exception's locator)."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


class JobCancelled(RuntimeError):
    """The job was dismissed (or its lease lost) while it ran."""


@dataclass(frozen=True)
class Env:
    """What a process needs to reach the data."""

    settings: Settings
    registry: Registry
    pool: Pool


@dataclass(frozen=True)
class RunContext:
    env: Env
    job_id: str | None
    progress: Callable[[int, str], None]  # (percent, message); raises JobCancelled when the job must stop

    @property
    def pool(self) -> Pool:
        return self.env.pool

    @property
    def registry(self) -> Registry:
        return self.env.registry

    @property
    def settings(self) -> Settings:
        return self.env.settings


def json_output(output_id: str, doc: Any, media_type: str = "application/json") -> Output:
    return Output(output_id, media_type, json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode())


class LantuProcessor(BaseProcessor):
    """Base class: subclasses set ``METADATA`` (the OGC process description) and implement
    ``validate`` and ``run``."""

    METADATA: ClassVar[dict]

    def __init__(self, processor_def: dict | None = None):
        super().__init__(processor_def or {"name": self.METADATA["id"]}, self.METADATA)

    @property
    def id(self) -> str:
        return self.METADATA["id"]

    def validate(self, inputs: dict, env: Env) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, inputs: dict, ctx: RunContext) -> list[Output]:  # pragma: no cover - abstract
        raise NotImplementedError

    def layers_needed(self, inputs: dict, registry: Registry) -> dict[str, list[str]]:
        """The layers the (validated) inputs make the process read, by the right they need: the access
        policy refuses the execution when the caller lacks one."""
        return {}

    def restrict(self, inputs: dict, may) -> dict:
        """The validated inputs narrowed to what the caller may see (``may(action, layer_id)``)."""
        return inputs

    def prefers_async(self, inputs: dict) -> bool:
        """Without a ``Prefer`` header: run in the background when the work may take long."""
        return False

    def execute(self, data: dict, outputs: dict | None = None):
        """pygeoapi's entry point (stock pygeoapi or a script): validate and run in the caller."""
        from lantu.config.registry import load_registry
        from lantu.config.settings import load_settings
        from lantu.providers.pool import get_pool

        settings = load_settings()
        env = Env(settings, load_registry(), get_pool(settings))
        results = self.run(self.validate(data, env), RunContext(env, None, lambda _p, _m: None))
        first = results[0]
        if first.media_type.endswith("json"):
            return "application/json", {o.output_id: json.loads(o.body) for o in results
                                        if o.media_type.endswith("json")}
        return first.media_type, first.body


# ---- input helpers shared by the processes -----------------------------------------------------------------
def plain_value(inputs: dict, name: str, default: Any = None) -> Any:
    """An input's value, accepting the qualified form ``{"value": …}`` of OGC API – Processes as well."""
    value = inputs.get(name, default)
    if isinstance(value, dict) and set(value) <= {"value", "mediaType", "encoding", "schema"} and "value" in value:
        return value["value"]
    return value


def number_input(inputs: dict, name: str, default: float | None, *, minimum: float = 0.0,
                 maximum: float = 1e12) -> float | None:
    value = plain_value(inputs, name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(name, f"must be a number, not {json.dumps(value, ensure_ascii=False)[:60]}")
    if not minimum <= value <= maximum:
        raise InvalidInput(name, f"must be between {minimum:g} and {maximum:g}")
    return float(value)


def text_input(inputs: dict, name: str, default: str | None = None, max_length: int = 200) -> str | None:
    value = plain_value(inputs, name, default)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(name, "must be a string")
    if len(value) > max_length:
        raise InvalidInput(name, f"must be at most {max_length} characters")
    return value


def bool_input(inputs: dict, name: str, default: bool = False) -> bool:
    value = plain_value(inputs, name, default)
    if not isinstance(value, bool):
        raise InvalidInput(name, "must be true or false")
    return value


def reject_unknown(inputs: dict, known: set[str]) -> None:
    unknown = sorted(set(inputs) - known)
    if unknown:
        raise InvalidInput(unknown[0], f"is not an input of this process (inputs: {', '.join(sorted(known))})")
