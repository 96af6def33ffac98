"""``laser serve`` on Ray Serve: the same app in N replicas, each loading the model once.

Needs Ray Serve: ``pip install 'laser-integrations[ray,serve]'``. The app is stateless, so replicas are
interchangeable: Ray's proxy spreads requests over them and each replica's micro-batcher coalesces what
reaches it. Build the application with :func:`deployment` and run it with ``serve.run``, or run
``laser serve --model MODEL --ray --replicas N``:

>>> import ray
>>> from ray import serve
>>> from laser_integrations.serving.ray_serve import deployment
>>> ray.init()                                                                          # doctest: +SKIP
>>> serve.start(http_options={"host": "127.0.0.1", "port": 8080})                       # doctest: +SKIP
>>> serve.run(deployment("laser-qwen3", replicas=2), name="laser", route_prefix="/")   # doctest: +SKIP

``/metrics`` answers from whichever replica the proxy picks; Ray Serve exports cluster-wide request
metrics of its own.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

try:
    from ray import serve
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "laser_integrations.serving.ray_serve needs Ray Serve: pip install 'laser-integrations[ray,serve]'"
    ) from error

from laser_integrations.serving.app import ServeSettings, create_app, default_served_name

if TYPE_CHECKING:
    from fastapi import FastAPI
    from ray.serve.deployment import Application


@serve.deployment(name="laser-serve")
@serve.ingress()
class LaSERDeployment:
    """One replica: loads the model from its spec and serves :func:`~laser_integrations.serving.app.create_app`."""

    def __init__(
        self,
        model: Any,
        settings: dict[str, Any] | None = None,
        load_options: dict[str, Any] | None = None,
        torch_threads: int | None = None,
    ) -> None:
        if torch_threads:
            import torch

            torch.set_num_threads(torch_threads)
        self._app = create_app(model, ServeSettings(**(settings or {})), **(load_options or {}))

    def __serve_build_asgi_app__(self) -> FastAPI:
        return self._app


def deployment(
    model: str | os.PathLike[str] | Any,
    *,
    replicas: int = 1,
    settings: ServeSettings | None = None,
    num_cpus: float = 1,
    num_gpus: float = 0,
    max_ongoing_requests: int = 256,
    torch_threads: int | None = None,
    **load_options: Any,
) -> Application:
    """A Ray Serve application serving ``model`` from ``replicas`` replicas (``serve.run`` it).

    Args:
        model: A model spec each replica loads (alias, Hub id, folder, ``.gguf``, ``smollm2``); a loaded
            ``SentenceTransformer`` works too but is shipped to every replica through Ray's object store.
        replicas: Number of replicas.
        settings: The :class:`~laser_integrations.serving.app.ServeSettings` every replica uses.
        num_cpus, num_gpus: Resources Ray reserves for each replica.
        max_ongoing_requests: Requests one replica takes at once. Keep it well above ``max_batch_size``:
            Ray's default (5) would cap every coalesced batch at 5 requests.
        torch_threads: ``torch.set_num_threads`` in each replica (``None``: leave torch's default).
        **load_options: :func:`~laser_integrations.load_model` options (``device``, ``dtype``, ``max_seq_length``
            ...).

    Example:
        >>> app = deployment("smollm2", replicas=2, settings=ServeSettings(api_key="secret"))  # doctest: +SKIP
    """
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    chosen = dataclasses.asdict(settings or ServeSettings())
    if chosen.get("served_model_name") is None and isinstance(model, str):
        chosen["served_model_name"] = default_served_name(model)
    options = {key: value for key, value in load_options.items() if value is not None}
    ray_options: dict[str, Any] = {"num_cpus": num_cpus}
    if num_gpus:
        ray_options["num_gpus"] = num_gpus
    configured = LaSERDeployment.options(
        num_replicas=replicas, ray_actor_options=ray_options, max_ongoing_requests=max_ongoing_requests
    )
    return configured.bind(model, chosen, options, torch_threads)
