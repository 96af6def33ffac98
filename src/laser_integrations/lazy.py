"""Names a package hands on without importing their modules until first use (PEP 562 module ``__getattr__``).

Keeps ``import laser_integrations`` and its subpackages cheap: torch, transformers, frameworks and servers load
only when a name that needs them is touched.

>>> import types
>>> package = types.ModuleType("demo_package")
>>> package.__getattr__ = lazy_exports("demo_package", {"dumps": "json"}, vars(package))
>>> package.dumps({"a": 1})
'{"a": 1}'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: MutableMapping[str, Any]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` importing ``exports[name]`` (a module path) on first access, then caching it."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        namespace[name] = value
        return value

    return __getattr__
