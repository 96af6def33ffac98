"""``laser serve``: one LaSER model behind the OpenAI and TEI embedding APIs every RAG stack already speaks.

- :func:`create_app` (:mod:`.app`) / :class:`ServeSettings` (:mod:`.settings`): the ASGI app
  (``pip install 'laser-integrations[serve]'``), built from :mod:`.routes`, :mod:`.middleware`, :mod:`.policy`,
  :mod:`.state` and :mod:`.errors`; :mod:`.connections` holds the limits uvicorn enforces per connection.
- :class:`RemoteEncoder` (:mod:`.client`): what the LangChain and LlamaIndex adapters use with ``endpoint=``.
- :func:`~laser_integrations.serving.ray_serve.deployment` (:mod:`.ray_serve`): the app as a Ray Serve
  deployment with N replicas (``pip install 'laser-integrations[ray,serve]'``).

Names are imported on first use, so the remote client needs neither FastAPI nor Ray.

>>> from laser_integrations.serving import create_app, ServeSettings                  # doctest: +SKIP
>>> app = create_app("smollm2", ServeSettings(max_batch_size=32))                    # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from laser_integrations.lazy import lazy_exports

_EXPORTS = {
    "create_app": "laser_integrations.serving.app",
    "ServeSettings": "laser_integrations.serving.settings",
    "RemoteEncoder": "laser_integrations.serving.client",
    "RemoteError": "laser_integrations.serving.client",
}

__all__ = ["RemoteEncoder", "RemoteError", "ServeSettings", "create_app"]

if TYPE_CHECKING:
    from laser_integrations.serving.app import create_app
    from laser_integrations.serving.client import RemoteEncoder, RemoteError
    from laser_integrations.serving.settings import ServeSettings


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
