"""The `tkvr` command line. It only parses flags into a config and calls commands/<name>.run.

Nothing here imports torch: `tkvr --help` answers without loading it.
"""

from __future__ import annotations

import sys

import click

from tkvr import __version__
from tkvr.config import HEADS, TEMPORAL, EmbedConfig, fail_if
from tkvr.errors import TkvrError

ARGV: list[str] = []  # the arguments of this invocation, for reports
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
@click.option("--text-encoder", default=None,
              help="st:NAME_OR_PATH: a text-only sentence-transformers encoder instead of CLIP's "
                   "(pip install 'tkvr[text]'); projected to the visual width by a seeded orthogonal map.")
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
              help="Video decoder; auto takes torchcodec when FFmpeg's libraries load, else PyAV. "
                   "AVIs are read by PyAV either way.")
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


def _load_config(ctx, param, value):
    """--config FILE.yaml: its keys are flag names; flags given on the command line win."""
    if not value:
        return value
    import yaml

    try:
        data = yaml.safe_load(open(value, encoding="utf-8")) or {}
    except OSError:
        raise TkvrError(f"--config {value}: no such file") from None
    except yaml.YAMLError as e:
        raise TkvrError(f"--config {value}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise TkvrError(f"--config {value}: expected a mapping of flag names to values")
    names = {p.name for p in ctx.command.params}
    flat = {}
    for k, v in data.items():
        key = str(k).lstrip("-").replace("-", "_")
        if key not in names or key == "config":
            raise TkvrError(f"--config {value}: {k!r} is not a flag of tkvr {ctx.command.name}")
        flat[key] = tuple(v) if isinstance(v, list) else v
    ctx.default_map = {**(ctx.default_map or {}), **flat}
    return value


def fabric_options(f):
    for opt in reversed([
        click.option("--accelerator", default="auto", help="cpu, gpu, cuda, mps, or auto."),
        click.option("--devices", default=1, type=int, help="Devices per node."),
        click.option("--num-nodes", default=1, type=int, help="Nodes (torchrun / SLURM / Fabric launcher)."),
        click.option("--strategy", default="auto", type=click.Choice(["auto", "ddp", "fsdp"]),
                     help="Distributed strategy."),
        click.option("--precision", default="32-true",
                     type=click.Choice(["32-true", "bf16-mixed", "16-mixed", "bf16-true"]), help="Numeric precision."),
    ]):
        f = opt(f)
    return f


def data_options(f):
    for opt in reversed([
        click.option("--data-root", default=None, help="Folder holding the built-in datasets [env: TKVR_DATA_ROOT]."),
        click.option("--fold", default=1, type=int, help="UCF-101 / HMDB-51 official split number."),
        click.option("--decoder", default="auto", type=click.Choice(["auto", "torchcodec", "pyav"]),
                     help="Video decoder (AVIs are read by PyAV either way)."),
        click.option("--decode-device", default="cpu", help="torchcodec decode device, e.g. cuda (NVDEC)."),
        click.option("--workers", default=None, type=int, help="DataLoader workers [default: cores - 1, <= 8]."),
    ]):
        f = opt(f)
    return f


def train_options(f):
    """The flags of every command that trains (train, fewshot, zeroshot)."""
    for opt in reversed([
        click.option("--config", type=click.Path(dir_okay=False), callback=_load_config, is_eager=True,
                     expose_value=False, help="YAML file whose keys are flag names; flags override it."),
        click.option("--backbone", default="ViT-B/16", help="See tkvr embed --help."),
        click.option("--pretrained", default=None, help="Weight tag, checkpoint PATH, or none."),
        click.option("--frames", default=8, type=int, help="Frames T per clip."),
        click.option("--temporal", default="tap", type=click.Choice(list(TEMPORAL)), help="Temporal module."),
        click.option("--temporal-layers", default=6, type=int, help="Layers of t-trans."),
        click.option("--head", default="text", type=click.Choice(list(HEADS)), help="Classifier head."),
        click.option("--lda-samples", default=60, type=int, help="--head lda: videos per class to fit it on."),
        click.option("--unfreeze-head", is_flag=True, help="Train the head too."),
        click.option("--embeddings", default=None, type=click.Path(dir_okay=False),
                     help="Class embeddings from tkvr embed [default: computed on the fly]."),
        click.option("--template", "templates", multiple=True,
                     help="Prompt template(s) [default: the dataset's, e.g. 'a video of a person {}.']."),
        click.option("--epochs", default=30, type=int, help="Epochs."),
        click.option("--batch-size", default=128, type=int,
                     help="Global batch = device batch x devices x nodes x accumulation."),
        click.option("--device-batch", default=None, type=int, help="Per-device batch [default: batch / devices]."),
        click.option("--lr", default=5e-6, type=float, help="Learning rate of the visual encoder."),
        click.option("--new-lr-ratio", default=10.0, type=float, help="New modules train at lr x this."),
        click.option("--weight-decay", default=0.2, type=float, help="AdamW weight decay (not on norms, biases, embeddings)."),
        click.option("--warmup", default=5.0, type=float, help="Warm-up epochs of the cosine schedule."),
        click.option("--grad-clip", default=None, type=float, help="Clip the gradient norm to this."),
        click.option("--grad-checkpointing", is_flag=True, help="Recompute backbone activations to save memory."),
        click.option("--label-fraction", default=1.0, type=float, help="Stratified fraction of the training labels."),
        click.option("--max-bad-fraction", default=0.05, type=float,
                     help="Stop when more than this share of training videos is unreadable."),
        click.option("--train-crop", default="rrc", type=click.Choice(["rrc", "multiscale"]), help="Train crop."),
        click.option("--views", default="1x1", help="Validation views CxS during training."),
        click.option("--eval-every", default=1, type=int, help="Validate every N epochs."),
        click.option("--seed", default=0, type=int, help="Seed of everything random."),
        click.option("--max-steps", default=None, type=int, help="Stop after this many optimiser steps (smoke runs)."),
        click.option("--limit-batches", default=None, type=int, help="Batches per epoch at most (smoke runs)."),
        click.option("--log-every", default=10, type=int, help="Steps between rows of steps.csv."),
        click.option("--compile", is_flag=True, help="torch.compile the visual encoder."),
        click.option("--fused/--no-fused", default=None,
                     help="Fused AdamW kernel [default: on for CUDA devices, off elsewhere]."),
        click.option("--tensorboard", is_flag=True, help="Also log to TensorBoard (needs tensorboard)."),
    ]):
        f = opt(f)
    return data_options(fabric_options(f))


def _train_config(kw: dict):
    from tkvr.config import TrainConfig

    kw = dict(kw)
    kw["templates"] = list(kw.get("templates") or []) or None
    kw["command"] = " ".join(["tkvr"] + ARGV)
    return TrainConfig.from_flags(kw)


@cli.command(context_settings=CONTEXT)
@click.option("--data", default="toy", help="Dataset: see tkvr check --help.")
@click.option("--out", default="runs/tkvr", help="Run directory.")
@click.option("--resume", default=None, help="auto (this run's last checkpoint, if any) or a checkpoint PATH.")
@train_options
def train(**kw):
    """Fine-tune the visual encoder with a frozen text classifier.

    \b
    Example:
      tkvr train --data k400 --data-root /data --backbone ViT-B/16 --frames 8 --out runs/k400_b16
    """
    cfg = _train_config(kw)
    from tkvr.commands import train as cmd

    cmd.run(cfg)


@cli.command("eval", context_settings=CONTEXT)
@click.option("--checkpoint", required=True, help="Run directory (its best, else last checkpoint) or a file.")
@click.option("--data", default=None, help="Evaluate on this dataset [default: the checkpoint's].")
@click.option("--split", default="val", type=click.Choice(["train", "val"]), help="Split to score.")
@click.option("--views", default="1x1", help="C temporal clips x S spatial crops (S in 1, 3), e.g. 4x3.")
@click.option("--labels", default=None, help="'data': embed the eval data's class names (zero-shot swap).")
@click.option("--batch-size", default=16, type=int, help="Videos per device and batch.")
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False), help="Write the report here.")
@data_options
@fabric_options
def eval_(json_path, **kw):
    """Score a checkpoint: top-1, top-5, mean class accuracy, per-class accuracy.

    \b
    Example:
      tkvr eval --checkpoint runs/k400_b16 --views 4x3 --json runs/k400_b16/eval_4x3.json
    """
    from tkvr.commands.eval import EvalConfig, run

    run(EvalConfig(json=json_path, **kw))


@cli.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1)
@click.option("--checkpoint", required=True, help="Run directory or checkpoint file.")
@click.option("--top-k", default=5, type=int, help="Labels per file.")
@click.option("--labels", default=None, help="New class names: \"a,b,c\" or a labels file (open vocabulary).")
@click.option("--decoder", default="auto", type=click.Choice(["auto", "torchcodec", "pyav"]), help="Video decoder.")
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False), help="Write results here.")
def predict(files, json_path, **kw):
    """Top-k labels with scores for video or image files.

    \b
    Example:
      tkvr predict clip.mp4 photo.jpg --checkpoint runs/k400_b16 --top-k 3 --labels "surfing,skiing,cooking"
    """
    from tkvr.commands.predict import PredictConfig, run

    run(PredictConfig(files=list(files), json=json_path, **kw))


@cli.command(context_settings=CONTEXT)
@click.option("--data", default="toy", help="Dataset: see tkvr check --help.")
@click.option("--shots", default="1,2,4,8,16", help="K values to sweep, comma-separated.")
@click.option("--repeats", default=1, type=int, help="Seeds per K (seed, seed+1, ...): mean ± std.")
@click.option("--sample", default=None, help="Replay a saved sample (sample.json of a run) instead of drawing one.")
@click.option("--epoch-size", default=None, type=int, help="Clips per epoch [default: the full training split].")
@click.option("--out", default="runs/fewshot", help="Folder of the sweep; one run directory per K and seed.")
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False), help="Write the table here.")
@train_options
def fewshot(shots, repeats, sample, epoch_size, json_path, **kw):
    """K-shot C-way training over all classes (the paper's Table 8), one run per K and seed.

    \b
    Example:
      tkvr fewshot --data k400 --data-root /data --backbone ViT-B/16 --shots 1,2,4,8,16 --repeats 3
    """
    from tkvr.commands.fewshot import FewshotConfig, parse_shots, run

    run(FewshotConfig(_train_config({**kw, "resume": None}), parse_shots(shots), repeats, sample, epoch_size,
                      json_path))


@cli.command(context_settings=CONTEXT)
@click.option("--train", "data", default="toy@seen", help="Seen classes: a dataset or class subset (K300, IN600, ...).")
@click.option("--eval", "eval_data", default="toy@unseen", help="Unseen classes (K100, IN400, ucf101, ...).")
@click.option("--no-train", is_flag=True, help="Only the pre-trained model (the 'w/o train' row).")
@click.option("--protocol", default="full", type=click.Choice(["full", "half"]),
              help="full: all eval classes; half: mean ± std over 10 seeded random halves.")
@click.option("--out", default="runs/zeroshot", help="Folder of the runs.")
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False), help="Write the rows here.")
@train_options
def zeroshot(eval_data, no_train, protocol, json_path, **kw):
    """Zero-shot recognition of unseen classes (the paper's Table 9): w/o and w/ training.

    \b
    Example:
      tkvr zeroshot --train K300 --eval K100 --data-root /data --backbone ViT-B/16 --protocol half
    """
    from tkvr.commands.zeroshot import ZeroshotConfig, run

    run(ZeroshotConfig(_train_config({**kw, "resume": None}), eval_data, no_train, protocol, json_path))


@cli.command(context_settings=CONTEXT)
@click.option("--out", default="runs/demo", help="Where the demo's runs go.")
@click.option("--epochs", default=8, type=int, help="Training epochs on the seen toy classes.")
@click.option("--workers", default=None, type=int, help="DataLoader workers [default: cores - 1, <= 8].")
@click.option("--seed", default=0, type=int, help="Seed.")
def demo(**kw):
    """The toy world end to end, offline, on a CPU: embed -> zero-shot -> train -> eval.

    \b
    Example:
      tkvr demo --out runs/demo
    """
    from tkvr.commands.demo import DemoConfig, run

    run(DemoConfig(**kw))


def main(argv=None) -> None:
    """Entry point: user mistakes become one line on stderr and exit code 2, never a traceback."""
    ARGV[:] = list(sys.argv[1:] if argv is None else argv)
    try:
        code = cli.main(args=argv, prog_name="tkvr", standalone_mode=False)
    except TkvrError as e:
        from tkvr.commands import NotBuilt

        click.echo(f"tkvr: error: {e}", err=True)
        sys.exit(1 if isinstance(e, NotBuilt) else 2)
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
