"""The app ``artlab explore`` serves: a one-cell notebook, its private kernelspec, Voilà template and config.

The options are baked into the notebook as literals; the kernelspec runs this very Python, so the
kernel imports the same artlab whatever kernels the user has installed elsewhere.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from artlab.explore.options import KERNEL_NAME, NOTEBOOK_NAME, TEMPLATE_NAME, ExploreOptions

__all__ = ["AppFiles", "VOILA_CONFIG", "app_notebook", "kernel_spec", "write_app", "write_token"]

# ----------------------------------------------------------------------------- the app files


def app_notebook(options: ExploreOptions) -> dict:
    """The app notebook (nbformat 4 JSON): one hidden code cell that shows a ``CuratorApp``.

    The options are written as Python literals (``repr``), so the notebook runs
    as is, without parameters passed at request time. The cell's source is
    marked hidden for JupyterLab too; Voilà strips it anyway.
    """
    args = ",\n    ".join(f"{k}={v!r}" for k, v in options.app_kwargs().items())
    source = (
        "from artlab.widgets.curator_app import CuratorApp\n"
        "\n"
        f"app = CuratorApp(\n    {args},\n)\n"
        "app"
    )
    cell = {
        "cell_type": "code",
        "execution_count": None,
        "id": "curator-app",
        "metadata": {"jupyter": {"source_hidden": True}, "tags": ["hide-input"]},
        "outputs": [],
        "source": source,
    }
    return {
        "cells": [cell],
        "metadata": {
            "kernelspec": {"name": KERNEL_NAME, "display_name": "artlab (explore)", "language": "python"},
            "language_info": {"name": "python"},
            "artlab": {"app": "explore", "options": options.app_kwargs()},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


#: Voilà's "lab" page without the two Font Awesome stylesheets it links from cdn.jsdelivr.net:
#: offline they fail (console errors), and behind a firewall that drops packets they hold
#: the page's rendering until the request times out. Icons still work: Voilà bundles the
#: Font Awesome fonts in its own static files. The block keeps what the lab template adds
#: (its style script, spinner and empty-cell CSS) and then skips to the block of the
#: template the lab template extends (``super.super()``).
TEMPLATE_INDEX = """{%- extends 'lab/index.html.j2' -%}
{% import "spinner.macro.html.j2" as spinner %}
{%- block notebook_css -%}
  {% if frontend == "voila" %}
    {{ resources.include_js("static/voila-style.js") }}
  {% endif %}
  {{ spinner.css() }}
  <style>.jp-mod-noOutputs.jp-mod-noInput { display: none; }</style>
  {{ super.super() }}
{%- endblock notebook_css -%}
"""


def interpreter_flags() -> list[str]:
    """``-P`` (Python 3.11+): no working directory or script directory first on ``sys.path``."""
    return ["-P"] if sys.version_info >= (3, 11) else []


def kernel_spec(python: str | None = None) -> dict:
    """A kernelspec running ``python`` (default: this interpreter), which has artlab installed.

    ``-P`` keeps the kernel's working directory off ``sys.path`` (Voilà starts it in the
    notebook's private directory anyway).
    """
    return {
        "argv": [python or sys.executable, *interpreter_flags(), "-m", "ipykernel_launcher",
                 "-f", "{connection_file}"],
        "display_name": "artlab (explore)",
        "language": "python",
        "metadata": {"debugger": False},
    }


#: the one config file the app's Voilà reads (``--Voila.config_file_paths`` names its folder).
#: Tornado's logs write a request's URL, token included, for every failed request; here
#: jupyter_server's access log (which writes ``token=[secret]``) replaces tornado's, and a
#: filter scrubs ``token=``/``_xsrf=`` values from everything tornado and Voilà log.
#: ``/voila/files/`` serves nothing: the page shows its images as data URLs.
VOILA_CONFIG = r'''# Written by artlab explore; Voila reads no other config file.
import logging
import re

from jupyter_server.log import log_request

_SECRET = re.compile(r"(\b(?:token|_xsrf)=)[^&\s'\"()<>]+", re.IGNORECASE)


class ScrubSecrets(logging.Filter):
    """Replace token values in a log record's message by [secret]."""

    def filter(self, record):
        message = record.getMessage()
        scrubbed = _SECRET.sub(r"\1[secret]", message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


for _name in ("tornado.access", "tornado.application", "tornado.general", "Voila"):
    logging.getLogger(_name).addFilter(ScrubSecrets())

c.Voila.tornado_settings = {"log_function": log_request}
c.VoilaConfiguration.file_allowlist = []
'''


@dataclass(frozen=True)
class AppFiles:
    """Where :func:`write_app` put the app, all under ``directory`` (private: 0700 when a temp dir).

    ``notebook`` sits alone in its folder, which is the server's and the kernel's working
    directory and Voilà's ``root_dir``; ``jupyter_path`` (first on ``JUPYTER_PATH``) holds the
    kernelspec and the Voilà template; ``config_dir`` holds the only Voilà config file read
    and is ``JUPYTER_CONFIG_DIR``; ``folder`` is the image folder (kept off every path).
    """

    directory: Path
    notebook: Path
    jupyter_path: Path
    folder: Path | None = None

    @property
    def config_dir(self) -> Path:
        return self.directory / "config"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def runtime_dir(self) -> Path:
        return self.directory / "runtime"

    @property
    def ipython_dir(self) -> Path:
        return self.directory / "ipython"

    @property
    def token_file(self) -> Path:
        return self.directory / "token"


def write_app(options: ExploreOptions, directory: str | os.PathLike) -> AppFiles:
    """Write the app notebook, its private kernelspec, Voilà template and config under ``directory``."""
    directory = Path(directory)
    jupyter_path = directory / "jupyter"
    template_dir = jupyter_path / "voila" / "templates" / TEMPLATE_NAME
    template_dir.mkdir(parents=True, exist_ok=True)
    (template_dir / "conf.json").write_text(json.dumps({"base_template": "lab"}))
    (template_dir / "index.html.j2").write_text(TEMPLATE_INDEX)
    kernel_dir = jupyter_path / "kernels" / KERNEL_NAME
    kernel_dir.mkdir(parents=True, exist_ok=True)
    (kernel_dir / "kernel.json").write_text(json.dumps(kernel_spec(), indent=1))
    notebook_dir = directory / "app"
    notebook_dir.mkdir(exist_ok=True)
    notebook = notebook_dir / NOTEBOOK_NAME.format(folder=options.folder.name or "images")
    notebook.write_text(json.dumps(app_notebook(options), indent=1))
    files = AppFiles(directory, notebook, jupyter_path, folder=options.folder)
    for private in (files.config_dir, files.data_dir, files.runtime_dir, files.ipython_dir):
        private.mkdir(exist_ok=True)
    (files.config_dir / "voila.py").write_text(VOILA_CONFIG)
    return files


def write_token(files: AppFiles, token: str) -> Path:
    """Write ``token`` to ``files.token_file``, readable by this user only (Voilà reads it via
    ``JUPYTER_TOKEN_FILE``: a command line is readable by every local user)."""
    path = files.token_file
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token)
    return path
