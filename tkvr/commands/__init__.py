"""The commands as one table: each names its settings class, the library function that does the
work, how its result is shown and what exit code it gives. `tkvr.cli` turns each row into a click
command; nothing else stands between a flag and the library.

Functions are named as "module:function" strings and imported when the command runs, so
`tkvr --help` loads neither torch nor a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

from tkvr.base import config as c
from tkvr.base.errors import TkvrError


class NotBuilt(TkvrError):
    """A feature that a later release of tkvr builds; the CLI exits with code 1, not 2."""


@dataclass(frozen=True)
class Command:
    name: str
    settings: type  # the config class whose declarations become the options
    run: str  # "module:function": settings -> result (the library)
    help: str
    show: str | None = None  # "module:function": (result, settings) -> None; None: the library says it
    plan: str | None = None  # --dry-run, where it is another function than `run`
    status: str | None = None  # "module:function": result -> exit code (or a Fault)
    arguments: tuple = ()  # click arguments before the options: (name, click.argument's keywords)
    config_file: bool = False  # --config FILE.yaml


def load(spec: str | None):
    """ "module:function" -> the function (None -> None), imported now."""
    if spec is None:
        return None
    module, name = spec.split(":")
    return getattr(import_module(module), name)


SHOW = "tkvr.commands.show"
COMMANDS = (
    Command(
        "embed",
        c.EmbedConfig,
        "tkvr.run.embedding:embed_classes",
        """Compute the class-embedding matrix [C, D] that serves as the frozen classifier.

        \b
        Example:
          tkvr embed --classes labels.txt --backbone ViT-B/16 --out k400_vitb16.pt --plot corr.png
        """,
        show=f"{SHOW}:embedded",
    ),
    Command(
        "backbones",
        c.BackbonesConfig,
        "tkvr.model.backbones:listing",
        """List the --backbone names tkvr takes, with their --pretrained tags and which are cached.

        \b
        Example:
          tkvr backbones --json backbones.json
        """,
        show=f"{SHOW}:backbones_table",
    ),
    Command(
        "check",
        c.CheckConfig,
        "tkvr.data.check:check",
        """Read every sample of a split the way training will; report missing, empty and unreadable
        files, the class count and samples per class. Exit 0 when every sample reads, 1 otherwise.

        \b
        Example:
          tkvr check --data ucf101 --data-root /data --split val --json ucf_val.json
        """,
        show=f"{SHOW}:checked",
        status=f"{SHOW}:check_status",
    ),
    Command(
        "prepare",
        c.PrepareConfig,
        "tkvr.data.prepare:prepare",
        """Rewrite a dataset once into a form that trains fast: videos re-encoded at a modest size with
        a key frame every few frames; a new dataset folder that --data takes. Resumable.

        \b
        Example:
          tkvr prepare --data k400 --data-root /data --out /data/k400_fast
          tkvr train --data /data/k400_fast
        """,
    ),
    Command(
        "train",
        c.TrainConfig,
        "tkvr.run.training:train",
        """Fine-tune the visual encoder with a frozen text classifier.

        \b
        Example:
          tkvr train --data k400 --data-root /data --backbone ViT-B/16 --frames 8 --out runs/k400_b16
        """,
        plan="tkvr.run.training:plan",
        config_file=True,
    ),
    Command(
        "eval",
        c.EvalConfig,
        "tkvr.run.evaluation:evaluate_checkpoint",
        """Score a checkpoint: top-1, top-5, mean class accuracy, per-class accuracy.

        \b
        Example:
          tkvr eval --checkpoint runs/k400_b16 --views 4x3 --json runs/k400_b16/eval_4x3.json
        """,
        show=f"{SHOW}:evaluated",
    ),
    Command(
        "predict",
        c.PredictConfig,
        "tkvr.run.predict:predict",
        """Top-k labels with scores for videos and images: files, folders, list files; from a
        trained run, or zero-shot from a pre-trained backbone; long videos in windows and segments.

        \b
        Examples:
          tkvr predict clips/ --backbone ViT-B/16 --labels "surfing,skiing,cooking" --out tags.csv
          tkvr predict clip.mp4 photo.jpg --checkpoint runs/k400_b16 --top-k 3
          tkvr predict match.mp4 --checkpoint runs/k400_b16 --window 4 --stride 1 --plot timeline.png
        """,
        show=f"{SHOW}:predicted",
        status=f"{SHOW}:predict_status",
        arguments=(
            (
                "files",
                {"nargs": -1, "help": "Video or image files, folders (searched recursively) and list files."},
            ),
        ),
    ),
    Command(
        "export",
        c.ExportConfig,
        "tkvr.run.export:export",
        """Write a trained run as a file other programs run without tkvr: ONNX or torch.export
        (.pt2), clips [B, T, 3, H, W] in, logits out, checked against tkvr; a JSON sidecar beside it.

        \b
        Example:
          tkvr export --checkpoint runs/k400_b16 --out k400_b16.onnx
        """,
    ),
    Command(
        "convert",
        c.ConvertConfig,
        "tkvr.run.convert:convert",
        """Turn a released Text4Vis model file (the authors' model zoo) into a tkvr run that eval,
        predict, zeroshot, export and train --init take.

        \b
        Example:
          tkvr convert k400-vitb-16-f8.pt --data k400 --data-root /data --out runs/k400-b16
          tkvr eval --checkpoint runs/k400-b16 --views 4x3
        """,
        arguments=(("file", {"required": False, "default": "", "help": "The released .pt file."}),),
    ),
    Command(
        "fewshot",
        c.FewshotConfig,
        "tkvr.run.protocols:fewshot",
        """K-shot C-way training over all classes (the paper's Table 8), one run per K and seed.

        \b
        Example:
          tkvr fewshot --data k400 --data-root /data --backbone ViT-B/16 --shots 1,3,5,all --repeats 3
        """,
        show=f"{SHOW}:fewshot_table",
        config_file=True,
    ),
    Command(
        "zeroshot",
        c.ZeroshotConfig,
        "tkvr.run.protocols:zeroshot",
        """Zero-shot recognition of unseen classes (the paper's Table 9): w/o and w/ training.

        \b
        Example:
          tkvr zeroshot --train K300 --eval K100 --data-root /data --backbone ViT-B/16 --protocol half
        """,
        show=f"{SHOW}:zeroshot_table",
        config_file=True,
    ),
    Command(
        "plot",
        c.PlotConfig,
        "tkvr.run.plots:draw",
        """Draw a figure of the paper from runs: correlation (Fig. 1), fractions (Fig. 3), loss (Fig. 4).

        \b
        Examples:
          tkvr plot correlation runs/k400_learned --out corr.png      # a run's head, or an embeddings file
          tkvr plot fractions runs/lf --out fractions.svg             # runs (or folders of runs) of two heads
          tkvr plot loss runs/text runs/learned --out loss.png
        """,
        show=f"{SHOW}:plotted",
        arguments=(
            (
                "figure",
                {
                    "required": False,
                    "default": "",
                    "help": "correlation (Figure 1: the inter-class "
                    "correlation of a head), fractions (Figure 3: accuracy against label fraction) or loss "
                    "(Figure 4: training loss of runs).",
                },
            ),
            (
                "inputs",
                {
                    "nargs": -1,
                    "help": "correlation: one embeddings file, checkpoint or run; fractions "
                    "and loss: runs, or folders of runs.",
                },
            ),
        ),
    ),
    Command(
        "demo",
        c.DemoConfig,
        "tkvr.commands.demo:demo",
        """The toy world end to end, offline, on a CPU: embed -> zero-shot -> train -> eval.

        \b
        Example:
          tkvr demo --out runs/demo
        """,
        show="tkvr.commands.demo:table",
    ),
)
