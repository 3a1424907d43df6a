"""`python -m anytalker` is the `anytalker` command."""

from anytalker.cli import app

app(prog_name="anytalker")
