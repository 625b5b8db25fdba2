"""``artlab explore FOLDER``: a folder's embedding map as a no-code Voilà app.

This module is the core side of the curator app; the page itself is
:class:`artlab.widgets.curator_app.CuratorApp`. Here we

* check what the user typed before anything starts (the folder holds readable
  images, the model, layer, pooling and size exist), so mistakes get a clear
  message instead of a broken page;
* write the app: a one-cell notebook that builds the ``CuratorApp`` with the
  options baked in as literals (Voilà runs it and strips the code, so the
  curator sees only the widgets), plus a private kernelspec whose ``argv`` is
  this very Python, so the kernel imports the same artlab whatever kernels the
  user has installed elsewhere;
* build Voilà's command line (127.0.0.1 only, a fresh token, our own port,
  sources stripped) and run it, printing the URL to open.

The image folder is data, never code or configuration (a downloaded data set
may hold anything): the server and its kernels run with a private working
directory (``-P`` on Python 3.11+, so no working directory on ``sys.path``
either), read Voilà config only from the app's own directory, get private
Jupyter/IPython config, data and runtime dirs, and an environment in which no
path variable (``PYTHONPATH``, ``PYTHONUSERBASE``, ``JUPYTER_PATH``…) points into
the folder and ``PYTHONSTARTUP`` is unset. The token reaches Voilà through a
private file (``JUPYTER_TOKEN_FILE``), not its command line (which every local
user can read), and the access log scrubs it from URLs. Kernel websockets must
speak the v1 kernel protocol; legacy-protocol clients are refused (Voilà misreads
legacy binary frames as v1 ones and then allocates without bound).

Embeddings are cached on disk by :func:`artlab.embed.embed` and the map's UMAP layout
next to them (:class:`artlab.embed.maps.LayoutCache`, ``<cache>/layouts``), so the first
launch on a folder shows a progress bar and later launches open straight on the final map
(measured on 2 CPU cores, 113 pictures: the app is built in ~4.5 s, most of it importing
torch; without the layout cache, UMAP's numba compile added ~8–17 s).

The package: :mod:`~artlab.explore.options` (the checks), :mod:`~artlab.explore.app` (the
files written), :mod:`~artlab.explore.connection` (the v1-only kernel websocket) and
:mod:`~artlab.explore.server` (running it).
"""

from __future__ import annotations

from artlab.explore.app import AppFiles, app_notebook, kernel_spec, write_app, write_token
from artlab.explore.connection import KERNEL_WS_PROTOCOL
from artlab.explore.options import (
    KERNEL_NAME,
    TEMPLATE_NAME,
    ExploreError,
    ExploreOptions,
    check_folder,
    check_options,
)
from artlab.explore.server import (
    ExploreServer,
    check_port,
    free_port,
    serve,
    start_server,
    voila_command,
    voila_env,
)

__all__ = [
    "ExploreError",
    "ExploreOptions",
    "ExploreServer",
    "AppFiles",
    "KERNEL_NAME",
    "KERNEL_WS_PROTOCOL",
    "TEMPLATE_NAME",
    "app_notebook",
    "check_folder",
    "check_options",
    "check_port",
    "free_port",
    "kernel_spec",
    "serve",
    "start_server",
    "voila_command",
    "voila_env",
    "write_app",
    "write_token",
]


def __getattr__(name: str):
    # the connection class is built on first use (jupyter_server is imported then, not before)
    if name == "V1OnlyKernelConnection":
        from artlab.explore import connection

        return connection.V1OnlyKernelConnection
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
