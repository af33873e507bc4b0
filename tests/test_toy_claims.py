"""The paper's claims, checked end to end in the toy world with the shipped toy CLIP (slow: minutes).

Each check runs the same commands a user runs, with the toy recipe of `tkvr demo`."""
import json

import pytest
import torch

from tkvr.run.settings import TOY_RECIPE

pytestmark = pytest.mark.slow


def recipe(**over) -> list[str]:
    r = {**TOY_RECIPE, "workers": 0, **over}  # no forked readers in-process: the one test that hung CI forked them
    out = []
    for k, v in r.items():
        out += [f"--{k.replace('_', '-')}", str(v)]
    return out


def test_text_head_beats_random_and_lda_heads_at_one_shot(run_cli, tmp_path):
    """Table 1's direction on the toy: at one shot the frozen text head beats a random head and
    LDA fitted on the one video per class (49.7 / 5.0 / 23.1 over 5 seeds in the replication)."""
    tops = {}
    for head, extra in (("text", ()), ("random", ()), ("lda", ("--lda-samples", "1"))):
        code, _, err = run_cli("fewshot", "--data", "toy", *recipe(temporal="tap", epochs=3), "--head", head,
                               "--shots", "1", "--shot-epochs", "3", "--repeats", "1", "--epoch-size", "240",
                               "--eval-every", "3",  # the final epoch's top-1 is the claim's; no other
                               "--out", tmp_path / head, "--json", tmp_path / f"{head}.json", *extra)
        assert code == 0, err
        tops[head] = json.loads((tmp_path / f"{head}.json").read_text())["1"]["top1"]
    assert tops["text"] >= tops["random"] + 20, tops
    assert tops["text"] >= tops["lda"] + 10, tops


def test_zero_shot_on_held_out_combinations(run_cli, tmp_path):
    """Table 9's direction: the unseen combinations far above chance before training and after two
    epochs on the seen ones (59.7% and 72.2% on the 2-core build machine; chance 5.6%)."""
    code, _, err = run_cli("zeroshot", "--train", "toy@seen", "--eval", "toy@unseen", *recipe(epochs=2),
                           "--eval-every", "2", "--out", tmp_path / "zs", "--json", tmp_path / "zs.json")
    assert code == 0, err
    rows = json.loads((tmp_path / "zs.json").read_text())
    chance = 100 / 18
    assert rows["without_training"]["top1"] >= 3 * chance, rows
    assert rows["with_training"]["top1"] >= 3 * chance, rows  # training on seen classes keeps it


def test_premise_coarse_alignment_and_one_example_is_not_a_class():
    """The toy world's premise on the pre-trained toy CLIP (TAP features, no training): zero-shot
    over all 54 classes far above chance (P2's lower bound); a one-video-per-class class-mean head
    well below the all-data one (P3); time order invisible to it."""
    import torch.nn.functional as F

    from tkvr.data.specs import resolve
    from tkvr.data.toy import factor_accuracy
    from tkvr.model.heads import class_means, one_per_class
    from tkvr.model.video_model import build
    from tkvr.run.evaluation import split_features
    from tkvr.run.settings import TrainConfig

    src = resolve("toy")
    c = len(src.classes)
    cfg = TrainConfig.from_flags({"backbone": "toy", "temporal": "tap", "frames": 8, "data": "toy", "workers": 0})
    _, model = build(cfg.model, src.classes, list(src.templates), seed=cfg.optim.seed)
    xt, yt = split_features(model, src, "train", 8)
    xv, yv = split_features(model, src, "val", 8)

    def top1(head):
        return 100.0 * ((F.normalize(xv, dim=-1) @ head.T).argmax(1) == yv).float().mean().item()

    zero = top1(F.normalize(model.head.weight.detach(), dim=-1))
    assert zero >= 3 * 100 / c, zero
    full = top1(class_means(xt, yt, c))
    one = [top1(class_means(xt[i], yt[i], c)) for i in (one_per_class(yt, c, seed) for seed in range(5))]
    # 0.59 on the world docs/toy.md reports (benchmarks/replicate_toy.py --only premise); a fresh
    # generation of the world differs in some files, hence the margin
    assert sum(one) / len(one) <= 0.65 * full, (one, full)
    scores = F.normalize(xv, dim=-1) @ F.normalize(model.head.weight.detach(), dim=-1).T
    assert 30 <= factor_accuracy(scores, yv, src.classes)["time order"] <= 70  # order-blind: near 50


def test_scrambled_class_order_falls_to_chance(tmp_path):
    """Class alignment proven by a test that can fail: the right embeddings give zero-shot
    accuracy far above chance; the same rows in a shuffled order give chance."""
    import open_clip
    from lightning_fabric import Fabric

    from tkvr.data.loader import eval_set, loader
    from tkvr.data.specs import resolve
    from tkvr.data.video import Reading
    from tkvr.model.backbones import build_backbone
    from tkvr.model.text import Made, encode_classes, load_embeddings, save_embeddings
    from tkvr.model.video_model import build
    from tkvr.run.auto import decoder
    from tkvr.run.metrics import evaluate
    from tkvr.run.settings import TrainConfig

    src = resolve("toy@unseen")
    bb = build_backbone("toy")
    emb = encode_classes(bb, src.classes, list(src.templates))
    c = len(src.classes)
    perm = torch.roll(torch.arange(c), c // 2)  # every row moves: no class keeps its own
    save_embeddings(tmp_path / "right.pt", emb, src.classes, Made("toy", None, tuple(src.templates), "text"))
    save_embeddings(tmp_path / "scrambled.pt", emb[perm], src.classes, Made("toy", None, tuple(src.templates), "text"))
    tops = {}
    for name in ("right", "scrambled"):
        cfg = TrainConfig.from_flags({"backbone": "toy", "frames": 8, "embeddings": str(tmp_path / f"{name}.pt"),
                                      "data": "toy@unseen", "workers": 0,
                                      "test_scale": 1.0})
        w = load_embeddings(tmp_path / f"{name}.pt", src.classes, bb.dim)["embeddings"]
        _, model = build(cfg.model, src.classes, list(src.templates), seed=0, embeddings=w)
        val = eval_set(src.split("val"), Reading.of(src, decoder(quiet=True)), 8,
                       dict(open_clip.get_model_preprocess_cfg(model.visual)), cfg.data.views, cfg.data.test_scale)
        tops[name] = evaluate(Fabric(accelerator="cpu", devices=1), model, loader(val, 32, False, 0, 0, 0, 1), c)["top1"]
    chance = 100 / c
    assert tops["right"] >= 3 * chance, tops
    assert tops["scrambled"] <= 2 * chance, tops
