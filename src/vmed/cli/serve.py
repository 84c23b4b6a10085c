"""``vmed serve``: the OpenAI-compatible HTTP API and the web UI for one model, with uvicorn.

Every flag's default comes from ``vmed.serve.settings.DEFAULT_LIMITS`` (the one home of the limits).
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Optional

import typer

from vmed.cli._apps import app
from vmed.errors import UserInputError
from vmed.serve.settings import DEFAULT_LIMITS as D
from vmed.serve.settings import MIB, ServeLimits

# lazy: keeps vmed --help fast (each command imports what it runs inside its function)


@app.command("serve")
def serve(
    model: Path = typer.Option(..., "--model", help="Model dir (plain HF LLaVA dir, training run dir or exported dir)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind. There is no authentication: keep 127.0.0.1 unless a proxy guards it."),
    port: int = typer.Option(8000, help="TCP port."),
    name: Optional[str] = typer.Option(None, "--name", help="Model id reported by /v1/models (default: the model dir's name)."),
    device: Optional[str] = typer.Option(None, help="torch device (default: cuda if available, else cpu)."),
    max_body_mb: float = typer.Option(D.max_body_bytes / MIB, "--max-body-mb", help="Largest request body in MiB; larger bodies get 413 before they are read."),
    max_image_pixels: int = typer.Option(D.max_image_pixels, "--max-image-pixels", help="Pixel budget per image, checked from the header before decoding (400)."),
    max_images: int = typer.Option(D.max_images, "--max-images", help="Most images per request (400 above); the model sees the last one."),
    max_concurrent: int = typer.Option(D.max_concurrent, "--max-concurrent", help="Requests processed at once (taken once the body is in); more get 429 at once."),
    default_max_tokens: int = typer.Option(D.default_max_tokens, "--default-max-tokens", help="max_tokens when a request sets none (clamped to the context)."),
    allow_image_host: list[str] = typer.Option([], "--allow-image-host", help="Host that http(s) image URLs may name (repeatable). Default: none, URLs refused."),
    image_fetch_timeout: float = typer.Option(D.fetch_timeout_s, "--image-fetch-timeout", help="Seconds allowed for fetching one image URL, redirects included."),
    image_fetch_max_mb: float = typer.Option(D.fetch_max_bytes / MIB, "--image-fetch-max-mb", help="Largest image fetched from a URL, in MiB."),
    header_timeout: float = typer.Option(D.header_timeout_s, "--header-timeout", help="Seconds a connection has to send its request line and headers; then it is closed."),
    body_timeout: float = typer.Option(D.body_timeout_s, "--body-timeout", help="Seconds a request has to send its whole body; then 408."),
    keep_alive: float = typer.Option(D.keep_alive_s, "--keep-alive", help="Seconds an idle keep-alive connection stays open."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn/vmed log level (debug, info, warning, error)."),
) -> None:
    """Serve a model over HTTP: POST /v1/chat/completions (OpenAI format, streaming), GET /v1/models, GET /health, and the web UI at /."""
    for flag, value in (("--max-images", max_images), ("--max-concurrent", max_concurrent), ("--max-image-pixels", max_image_pixels),
                        ("--default-max-tokens", default_max_tokens)):
        if value < 1:
            raise UserInputError(f"{flag} must be at least 1, got {value}")
    for flag, value in (("--max-body-mb", max_body_mb), ("--image-fetch-timeout", image_fetch_timeout), ("--image-fetch-max-mb", image_fetch_max_mb),
                        ("--header-timeout", header_timeout), ("--body-timeout", body_timeout), ("--keep-alive", keep_alive)):
        if not value > 0:
            raise UserInputError(f"{flag} must be positive, got {value}")
    if not model.exists():
        raise UserInputError(f"--model {model}: no such directory; pass a model dir made by `vmed model init`, an exported dir or a training run dir")

    limits = ServeLimits(
        max_body_bytes=int(max_body_mb * MIB),
        max_image_pixels=max_image_pixels,
        max_images=max_images,
        max_concurrent=max_concurrent,
        allowed_image_hosts=tuple(h.lower().rstrip(".") for h in allow_image_host),
        fetch_timeout_s=image_fetch_timeout,
        fetch_max_bytes=int(image_fetch_max_mb * MIB),
        default_max_tokens=default_max_tokens,
        header_timeout_s=header_timeout,
        body_timeout_s=body_timeout,
        keep_alive_s=keep_alive,
    )
    from vmed.inference import Engine
    from vmed.serve.api import create_app
    from vmed.serve.server import uvicorn_config

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = Engine.from_pretrained(str(model), device=device)
    application = create_app(engine, limits, model_name=name or model.resolve().name)

    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        typer.echo(f"warning: binding {host}: the API has no authentication; anyone who can reach this address can use it", err=True)
    typer.echo(f"vmed serve: http://{host}:{port}/ (web UI), http://{host}:{port}/v1 (OpenAI API)", err=True)

    import uvicorn

    uvicorn.Server(uvicorn_config(application, host=host, port=port, log_level=log_level.lower())).run()
