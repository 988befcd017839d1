"""`attest gallery`: contact sheets of random dogs, to judge the renderer by eye."""

from __future__ import annotations

from pathlib import Path

import typer

from attest.errors import InputError


def gallery(
    out: Path = typer.Option(
        ..., "--out", help="Directory to write gallery.png and gallery-pairs.png into (created if missing)."
    ),
    n: int = typer.Option(64, "--n", help="Number of random dogs on the contact sheet (1..1024)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the random latents (0..2**32-1)."),
) -> None:
    from attest.render.gallery import make_gallery

    if not 1 <= n <= 1024:
        raise InputError(f"--n must be between 1 and 1024, got {n}")
    if not 0 <= seed < 2**32:
        raise InputError(f"--seed must be between 0 and 2**32-1, got {seed}")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a directory")
    try:
        paths = make_gallery(out, n=n, seed=seed)
    except OSError as exc:
        raise InputError(f"cannot write to {out}: {exc.strerror or exc}") from exc
    for p in paths:
        typer.echo(str(p))


GALLERY_HELP = (
    "Draw dogs from random latents: DIR/gallery.png holds N random dogs (are they "
    "varied?), DIR/gallery-pairs.png holds base dogs next to latents at cosine "
    "0.99, 0.95, 0.9, 0.7 and 0 from them (do near latents look alike?). "
    "Same --seed, same pictures."
)


def register(app: typer.Typer) -> None:
    app.command("gallery", help=GALLERY_HELP)(gallery)
