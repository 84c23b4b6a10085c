"""``vmed gradio``: the Gradio chat front-end for any OpenAI-compatible endpoint (optional extra ``vmed[gradio]``).

Gradio is imported inside the command so that ``vmed --help`` stays fast and works without the extra.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from vmed.cli._apps import app
from vmed.errors import UserInputError

# lazy: keeps vmed --help fast (each command imports what it runs inside its function)
__all__ = ["gradio"]


@app.command("gradio")
def gradio(
    endpoint: str = typer.Option(..., "--endpoint", help="Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000 (vmed serve, vLLM, SGLang)."),
    served_model: Optional[str] = typer.Option(None, "--served-model", help="Model id to request (default: the first one /v1/models lists)."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="Name of the environment variable holding the endpoint's API key."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to serve the page on."),
    port: int = typer.Option(7860, "--port", min=1, max=65535, help="Port to serve the page on."),
    max_tokens: int = typer.Option(256, "--max-tokens", min=1, max=8192, help="Default maximum answer length (a slider in the page)."),
    timeout: float = typer.Option(120.0, "--timeout", min=1.0, help="Seconds to wait for the endpoint per request."),
    examples_dir: Path = typer.Option(Path(".vmed-gradio-examples"), "--examples-dir", help="Where the example phantom images are written."),
) -> None:
    """A multimodal chat page (upload, DICOM windowing, streaming, stop, retry, undo, transcript) for any endpoint.

    It never loads a model: run `vmed serve --model DIR` or `vllm serve DIR` first and point --endpoint at it.
    """
    try:
        from vmed.serve.gradio_app import launch
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == "gradio":
            raise UserInputError("vmed gradio needs Gradio: pip install 'vmed[gradio]'") from None
        raise
    api_key = None
    if api_key_env is not None:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise UserInputError(f"--api-key-env {api_key_env}: that environment variable is not set or empty")
    if not endpoint.startswith(("http://", "https://")):
        raise UserInputError(f"--endpoint {endpoint!r}: expected an http:// or https:// URL, e.g. http://127.0.0.1:8000")
    typer.echo(f"vmed gradio: http://{host}:{port}/ -> {endpoint}", err=True)
    launch(endpoint, served_model=served_model, api_key=api_key, host=host, port=port, max_tokens=max_tokens,
           timeout=timeout, examples_dir=examples_dir)
