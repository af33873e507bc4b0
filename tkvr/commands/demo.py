"""tkvr demo: the toy world end to end on a CPU in a few minutes.

embed -> zero-shot with the pre-trained toy CLIP -> train on the seen classes -> eval (2x3 views)
-> zero-shot again with the trained model. Every step is the library call behind the command a
user would type.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from tkvr.base.fileio import atomic_write_text, writable, write_json
from tkvr.base.progress import console, count, say, wrote
from tkvr.base.settings import Settings, at_least, borrow, build, fail_if
from tkvr.commands.shared import Command
from tkvr.data.settings import EvalSource, SourceConfig
from tkvr.run.settings import TOY_RECIPE, EvalConfig, OptimConfig, RunConfig, TrainConfig, ZeroshotConfig


@dataclass
class DemoConfig(Settings):
    out: str = borrow(RunConfig, "out", default="runs/demo", help="Where the demo's runs go.")
    epochs: int = borrow(OptimConfig, "epochs", default=3, help="Training epochs on the seen toy classes.")
    workers: int | None = borrow(SourceConfig, "workers")
    seed: int = borrow(OptimConfig, "seed")

    def validate(self) -> None:
        problems: list[str] = []
        at_least(problems, self, 1, "epochs")
        at_least(problems, self, 0, "workers")
        writable(problems, "--out", self.out, folder=True)
        fail_if(problems)


def fresh(out: Path) -> Path:
    """The demo's folder: `out` when it is new or empty, else the first free `out-2`, `out-3`, ...
    so a second demo runs as the first did and leaves the first one's results alone."""
    if not out.exists() or not any(out.iterdir()):
        return out
    n = 2
    while Path(f"{out}-{n}").exists():
        n += 1
    say(f"{out} holds an earlier demo; this one writes to {out}-{n}")
    return Path(f"{out}-{n}")


def demo(cfg: DemoConfig) -> dict:
    """embed -> zero-shot -> train -> eval -> zero-shot again, each step saying what it does.
    -> the three numbers (top-1 %) and what the table beside them needs."""
    # deferred: tkvr --help loads no torch
    from tkvr.data.specs import resolve
    from tkvr.model.backbones import build_backbone  # (deferred, as above)
    from tkvr.model.text import Made, embed  # (deferred, as above)
    from tkvr.run.evaluation import evaluate_checkpoint  # (deferred, as above)
    from tkvr.run.protocols import zeroshot  # (deferred, as above)
    from tkvr.run.training import train  # (deferred, as above)

    out = fresh(Path(cfg.out))
    seen, unseen = resolve("toy@seen"), resolve("toy@unseen")
    n_seen, n_unseen = len(seen.classes), len(unseen.classes)
    say(
        f"[1/5] the toy world: {n_seen} seen classes (e.g. '{seen.classes[0]}', '{seen.classes[3]}'), "
        f"{n_unseen} unseen ones, 16-frame videos"
    )
    emb = out / "seen_embeddings.pt"
    atomic_write_text("".join(c + "\n" for c in seen.classes), out / "seen_classes.txt")
    plot = None
    try:
        import matplotlib  # noqa: F401

        plot = str(out / "seen_correlation.png")
    except ImportError:
        pass
    say("[2/5] tkvr embed: class names -> frozen classifier")
    made = Made("toy", templates=tuple(seen.templates))
    res = embed(seen.classes, build_backbone("toy"), made, out=str(emb))
    if plot:
        from tkvr.run.plots import plot_correlation  # deferred: matplotlib, only when installed

        plot_correlation(res["embeddings"], res["classes"], plot, title="text embeddings, toy")

    flags = dict(
        TOY_RECIPE,
        epochs=cfg.epochs,
        workers=cfg.workers,
        seed=cfg.seed,
        embeddings=str(emb),
        views="1x1",
        command="tkvr demo",
    )
    say(f"[3/5] tkvr zeroshot --no-train: the pre-trained toy CLIP on the {n_unseen} unseen classes")
    zs = zeroshot(
        build(
            ZeroshotConfig,
            {
                **flags,
                "seen": "toy@seen",
                "eval_data": "toy@unseen",
                "no_train": True,
                "out": str(out / "zeroshot"),
            },
        )
    )
    say(f"[4/5] tkvr train: {count(cfg.epochs, 'epoch')} on the seen classes, frozen text head, t-trans")
    train(TrainConfig.from_flags({**flags, "data": "toy@seen", "out": str(out / "train")}))
    say("[5/5] tkvr eval: seen classes (2x3 views), then unseen classes with their names swapped in")
    ckpt = str(out / "train")
    seen_eval = evaluate_checkpoint(
        EvalConfig(checkpoint=ckpt, views="2x3", source=EvalSource(workers=cfg.workers))
    )
    unseen_eval = evaluate_checkpoint(
        EvalConfig(checkpoint=ckpt, labels="data", source=EvalSource(data="toy@unseen", workers=cfg.workers))
    )
    write_json(seen_eval, out / "eval_seen.json")
    write_json(unseen_eval, out / "eval_unseen.json")

    return {
        "zeroshot_pretrained": zs["without_training"]["top1"],
        "seen": seen_eval["top1"],
        "zeroshot_trained": unseen_eval["top1"],
        "seen_classes": n_seen,
        "unseen_classes": n_unseen,
        "plot": plot,
        "out": str(out),
    }


def table(r: dict, cfg: DemoConfig) -> None:
    """The demo's three numbers beside chance."""
    n_seen, n_unseen, out, plot = r["seen_classes"], r["unseen_classes"], r["out"], r["plot"]
    t = Table(title="tkvr demo: what the toy world shows")
    t.add_column("what")
    t.add_column("classes", justify="right")
    t.add_column("top-1 %", justify="right")
    t.add_column("chance %", justify="right")
    t.add_row(
        "zero-shot, pre-trained toy CLIP (no video seen)",
        f"{n_unseen} unseen",
        f"{r['zeroshot_pretrained']:.1f}",
        f"{100 / n_unseen:.1f}",
    )
    t.add_row(
        f"trained {count(cfg.epochs, 'epoch')}, seen classes, 2x3 views",
        f"{n_seen} seen",
        f"{r['seen']:.1f}",
        f"{100 / n_seen:.1f}",
    )
    t.add_row(
        "zero-shot after training on the seen classes",
        f"{n_unseen} unseen",
        f"{r['zeroshot_trained']:.1f}",
        f"{100 / n_unseen:.1f}",
    )
    console().print(t)
    wrote(
        out,
        "train/ (config, checkpoints, metrics.csv, report.json), zeroshot/, eval_*.json, "
        "seen_embeddings.pt" + (", seen_correlation.png" if plot else ""),
    )


COMMAND = Command(
    "demo",
    DemoConfig,
    demo,
    """The toy world end to end, offline, on a CPU: embed -> zero-shot -> train -> eval.

    \b
    Example:
      tkvr demo --out runs/demo
    """,
    show=table,
)
