"""Third-party modules that cost much at import and little or nothing when used.

`rfc3987_syntax` builds about 35 Lark parsers when imported: 1.8 s on our 2-core test machine,
most of a `jupyter fractal` command's start-up. jsonschema imports it with itself (for the
`iri` and `iri-reference` formats, with its `format-nongpl` extra, which jupyter_events asks
for), and jupyter_server, our widgets and the CLI import jsonschema. No schema of Jupyter's or
ours uses those formats (jsonschema issue 1428 asks for the lazy import upstream).

`defer_rfc3987_syntax` puts a stand-in under the module's name, before jsonschema comes: the real
module is imported the first time anything of it is used, a format check among them. The
package calls it when it is imported, so it takes effect under `jupyter fractal` (its commands
and its server) and in kernels; `jupyter server` and `jupyter lab` import jsonschema before
any extension, and are left as they are.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

RFC3987_SYNTAX = "rfc3987_syntax"


def defer_rfc3987_syntax() -> None:
    if RFC3987_SYNTAX in sys.modules or "jsonschema" in sys.modules:
        return
    try:
        spec = importlib.util.find_spec(RFC3987_SYNTAX)
    except (ImportError, ValueError):
        return
    if spec is None:
        return
    swap_lock = threading.Lock()
    stand_in = types.ModuleType(RFC3987_SYNTAX, "imported when first used (fractal_jupyter)")

    def real_module() -> types.ModuleType:
        # Two threads must not both take the stand-in out (the second could remove the real
        # module while the first imports it); the import itself is importlib's to serialize.
        with swap_lock:
            if sys.modules.get(RFC3987_SYNTAX) is stand_in:
                del sys.modules[RFC3987_SYNTAX]
        return importlib.import_module(RFC3987_SYNTAX)

    # What jsonschema imports by name: a from-import reads the attribute at once.
    def is_valid_syntax(*args: Any, **kwargs: Any) -> Any:
        return real_module().is_valid_syntax(*args, **kwargs)

    def __getattr__(name: str) -> Any:  # anything else that is asked for
        return getattr(real_module(), name)

    stand_in.is_valid_syntax = is_valid_syntax  # type: ignore[attr-defined]
    stand_in.__getattr__ = __getattr__  # type: ignore[method-assign]
    stand_in.__path__ = list(spec.submodule_search_locations or [])
    sys.modules[RFC3987_SYNTAX] = stand_in
