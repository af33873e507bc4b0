"""tkvr demo: the toy world end to end on a CPU in a few minutes.

embed -> zero-shot with the pre-trained toy CLIP -> train on the seen classes -> eval (2x3 views)
-> zero-shot again with the trained model. Everything goes through the same commands a user runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tkvr.progress import console, say

# The toy recipe: the paper's, scaled for a 3M-parameter model and a 480-clip dataset.
# A 0.47M-parameter visual encoder and 480 clips need a larger step than CLIP ViT-B on Kinetics:
# lr 1e-4 for the backbone, 50x for the temporal transformer, which starts from scratch (near TAP).
TOY_RECIPE = dict(backbone="toy", frames=8, temporal="t-trans", temporal_layers=2, batch_size=32, lr=1e-4,
                  new_lr_ratio=50.0, warmup=1.0, weight_decay=0.2, train_crop="multiscale")


@dataclass
class DemoConfig:
    out: str = "runs/demo"
    epochs: int = 8
    workers: int | None = None
    seed: int = 0


def run(cfg: DemoConfig) -> dict:
    from tkvr.commands import embed as embed_cmd
    from tkvr.commands import eval as eval_cmd
    from tkvr.commands import train as train_cmd
    from tkvr.commands import zeroshot as zs_cmd
    from tkvr.config import EmbedConfig, TrainConfig
    from tkvr.data.specs import resolve

    out = Path(cfg.out)
    seen = resolve("toy@seen")
    say(f"[1/5] the toy world: {len(seen.classes)} seen classes (e.g. '{seen.classes[0]}'), "
        "20 unseen ones, 16-frame videos")
    emb = out / "seen_embeddings.pt"
    (out / "seen_classes.txt").parent.mkdir(parents=True, exist_ok=True)
    (out / "seen_classes.txt").write_text("".join(c + "\n" for c in seen.classes))
    plot = None
    try:
        import matplotlib  # noqa: F401

        plot = str(out / "seen_correlation.png")
    except ImportError:
        pass
    say("[2/5] tkvr embed: class names -> frozen classifier")
    embed_cmd.run(EmbedConfig(classes=str(out / "seen_classes.txt"), out=str(emb), backbone="toy",
                              templates=list(seen.templates), plot=plot))

    flags = dict(TOY_RECIPE, data="toy@seen", epochs=cfg.epochs, workers=cfg.workers, seed=cfg.seed,
                 embeddings=str(emb), out=str(out / "train"), views="1x1", command="tkvr demo")
    tcfg = TrainConfig.from_flags(flags)
    say("[3/5] tkvr zeroshot --no-train: the pre-trained toy CLIP on the 20 unseen classes")
    zs = zs_cmd.run(zs_cmd.ZeroshotConfig(TrainConfig.from_flags({**flags, "out": str(out / "zeroshot")}),
                                          "toy@unseen", no_train=True))
    say(f"[4/5] tkvr train: {cfg.epochs} epochs on the seen classes, frozen text head, t-trans")
    train_cmd.run(tcfg)
    say("[5/5] tkvr eval: seen classes (2x3 views), then unseen classes with their names swapped in")
    seen_eval = eval_cmd.run(eval_cmd.EvalConfig(checkpoint=str(out / "train"), views="2x3", workers=cfg.workers,
                                                 json=str(out / "eval_seen.json")))
    unseen_eval = eval_cmd.run(eval_cmd.EvalConfig(checkpoint=str(out / "train"), data="toy@unseen", labels="data",
                                                   workers=cfg.workers, json=str(out / "eval_unseen.json")))
    from rich.table import Table

    t = Table(title="tkvr demo: what the toy world shows")
    t.add_column("what")
    t.add_column("classes", justify="right")
    t.add_column("top-1 %", justify="right")
    t.add_column("chance %", justify="right")
    t.add_row("zero-shot, pre-trained toy CLIP (no video seen)", "20 unseen",
              f"{zs['without_training']['top1']:.1f}", f"{100 / 20:.1f}")
    t.add_row(f"trained {cfg.epochs} epochs, seen classes, 2x3 views", "40 seen", f"{seen_eval['top1']:.1f}",
              f"{100 / 40:.1f}")
    t.add_row("zero-shot after training on the seen classes", "20 unseen", f"{unseen_eval['top1']:.1f}",
              f"{100 / 20:.1f}")
    console().print(t)
    say(f"everything is in {out}: train/ (config, checkpoints, metrics.csv, report.json), "
        "eval_*.json, seen_embeddings.pt" + (", seen_correlation.png" if plot else ""))
    return {"zeroshot_pretrained": zs["without_training"]["top1"], "seen": seen_eval["top1"],
            "zeroshot_trained": unseen_eval["top1"]}
