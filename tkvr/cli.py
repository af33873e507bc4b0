"""The `tkvr` command line. It only parses flags into a config and calls commands/<name>.run.

Nothing here imports torch: `tkvr --help` answers without loading it.
"""

from __future__ import annotations

import sys

import click

from tkvr import __version__
from tkvr.config import HEADS, TEMPORAL, EmbedConfig, fail_if
from tkvr.errors import TkvrError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100, "show_default": True}


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="tkvr")
def cli():
    """tkvr: fine-tune a CLIP visual encoder for video and image recognition, with a frozen
    classifier made of text embeddings of the class names (Text4Vis).

    \b
    Start here:
      tkvr embed --classes k400 --backbone ViT-B/16 --out k400.pt
    """


@cli.command(context_settings=CONTEXT)
@click.option("--classes", required=True,
              help="Labels file (one name a line, or CSV id,name), a comma list \"a,b,c\", or a "
                   "built-in list: k400, imagenet.")
@click.option("--backbone", default="ViT-B/16",
              help="OpenAI name (ViT-B/16, ViT-L/14, RN50, ...), open_clip name, hf-hub:ORG/REPO, "
                   "or built-in tiny / tiny-rn.")
@click.option("--pretrained", default=None,
              help="Weight tag (e.g. laion2b_s34b_b88k), a local checkpoint PATH, or 'none'. "
                   "OpenAI names default to 'openai'.")
@click.option("--template", "templates", multiple=True,
              help="Prompt template with {} for the class name; repeat to average several. "
                   "[default: 'a video of a person {}.']")
@click.option("--head", default="text", type=click.Choice(["text", "random", "orthogonal"]),
              help="Which matrix to write: text embeddings, or a random / orthogonal baseline.")
@click.option("--seed", default=0, type=int, help="Seed of the random and orthogonal matrices.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="File to write (.pt).")
@click.option("--plot", default=None, type=click.Path(dir_okay=False),
              help="Also draw the inter-class correlation map to this PNG (needs matplotlib).")
def embed(**kw):
    """Compute the class-embedding matrix [C, D] that serves as the frozen classifier.

    \b
    Example:
      tkvr embed --classes labels.txt --backbone ViT-B/16 --out k400_vitb16.pt --plot corr.png
    """
    from tkvr.text import DEFAULT_TEMPLATES

    kw["templates"] = list(kw["templates"]) or list(DEFAULT_TEMPLATES)
    cfg = EmbedConfig(**kw)
    fail_if(cfg.validate())
    from tkvr.commands import embed as cmd

    cmd.run(cfg)


@cli.command(context_settings=CONTEXT)
@click.option("--data", required=True,
              help="Built-in name (k400, k600, ucf101, hmdb51, imagenet, toy), a YAML dataset file or a "
                   "folder; add @SUBSET for a class subset (k400@K300, ucf101@classes.txt).")
@click.option("--split", default="train", type=click.Choice(["train", "val"]), help="Which split to scan.")
@click.option("--data-root", default=None, help="Folder holding the built-in datasets [env: TKVR_DATA_ROOT].")
@click.option("--fold", default=1, type=int, help="UCF-101 / HMDB-51 official split number (1-3).")
@click.option("--decoder", default="auto", type=click.Choice(["auto", "torchcodec", "pyav"]),
              help="Video decoder; auto takes torchcodec when FFmpeg's libraries load, else PyAV.")
@click.option("--frames", default=8, type=int, help="Frames read per video, as in training.")
@click.option("--workers", default=None, type=int, help="Reader processes. [default: cores - 1, at most 8]")
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False),
              help="Write the report as JSON (num_samples, num_classes, classes, unreadable, ...).")
def check(json_path, **kw):
    """Read every sample of a split the way training will; report missing, empty and unreadable
    files, the class count and samples per class. Exit 0 when every sample reads, 1 otherwise.

    \b
    Example:
      tkvr check --data ucf101 --data-root /data --split val --json ucf_val.json
    """
    from tkvr.commands.check import CheckConfig, run

    sys.exit(run(CheckConfig(json=json_path, **kw)))


def _not_built(name: str, example: str):
    def command(**_):
        click.echo(f"tkvr {name}: not built yet in this version of tkvr; "
                   "see the README's roadmap for what exists today", err=True)
        sys.exit(1)

    command.__doc__ = f"(not built yet) see README.\n\n\b\nExample:\n  {example}"
    return cli.command(name, context_settings=CONTEXT)(command)


_not_built("train", "tkvr train --data k400 --backbone ViT-B/16 --out runs/k400")
_not_built("eval", "tkvr eval --checkpoint runs/k400 --views 4x3")
_not_built("fewshot", "tkvr fewshot --data ucf101 --shots 1,2,4 --backbone ViT-B/16")
_not_built("zeroshot", "tkvr zeroshot --train K300 --eval K100 --backbone ViT-B/16")
_not_built("predict", "tkvr predict clip.mp4 --checkpoint runs/k400 --top-k 5")


def main(argv=None) -> None:
    """Entry point: user mistakes become one line on stderr and exit code 2, never a traceback."""
    try:
        code = cli.main(args=argv, prog_name="tkvr", standalone_mode=False)
    except TkvrError as e:
        click.echo(f"tkvr: error: {e}", err=True)
        sys.exit(2)
    except click.UsageError as e:
        cmd = e.ctx.command_path if e.ctx else "tkvr"
        click.echo(f"tkvr: error: {e.format_message()} (see '{cmd} --help')", err=True)
        sys.exit(2)
    except click.ClickException as e:
        click.echo(f"tkvr: error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except click.Abort:
        click.echo("tkvr: aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("tkvr: interrupted", err=True)
        sys.exit(130)
    sys.exit(code or 0)
