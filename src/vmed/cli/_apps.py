"""The Typer applications that the command modules attach to. Imports nothing heavy.

Each ``vmed.cli.<area>`` module adds its commands to these apps; heavy libraries (torch,
transformers) are imported inside the command functions so that ``vmed --help`` stays fast.
"""

import typer

app = typer.Typer(
    name="vmed",
    help="vmed: medical visual dialogue models: data, three-stage training, evaluation, chat, API and web UI.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Dialogue data: phantoms, validation, conversion, stats, export.", no_args_is_help=True)
model_app = typer.Typer(help="Build and inspect model directories.", no_args_is_help=True)
image_app = typer.Typer(help="Medical image loading (PNG/JPEG/DICOM).", no_args_is_help=True)
eval_app = typer.Typer(help="Turn-by-turn evaluation, scoring and comparison.", no_args_is_help=True)

app.add_typer(data_app, name="data")
app.add_typer(model_app, name="model")
app.add_typer(image_app, name="image")
app.add_typer(eval_app, name="eval")
