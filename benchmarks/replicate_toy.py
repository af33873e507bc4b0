"""The paper's experiments in miniature, on the toy world, on a CPU.

    python benchmarks/replicate_toy.py [--seeds 5] [--out runs/replicate] [--only premise,table1,...]

Every number is a mean ± std over seeds; each run is an ordinary tkvr command (train, fewshot,
zeroshot) with the toy recipe (tkvr.run.settings.TOY_RECIPE). Printed as markdown tables, with what
the paper reports for the same comparison beside them; written to OUT/replicate.json, and the
training-loss curves (Figure 4) to OUT/loss_curves.png.

  premise   P1 every word of every class name is in the toy CLIP's pretraining captions, with the
            task's meaning; P2 zero-shot top-1 over all 54 classes is >= 3x chance and <= 0.75x
            the all-data fine-tuned top-1 (Table 2's T-Trans runs); P3 a 1-shot nearest-class-
            mean / LDA head on the pre-trained features reaches <= 0.6x its all-data top-1;
            P4 a linear probe on the pre-trained embeddings of a paired clip's first and last frames
            tells its direction (before any training: frames carry what ordering them needs);
            zero-shot accuracy per factor (colour, shape, colour x shape, time order)
  Table 1   frozen head from text (toy CLIP) vs random vs orthogonal vs LDA, 1-shot, TAP
  Table 2   TAP vs T-Trans vs TokenT1D, all data; top-1 and time-order pair accuracy (the
            'moving left' vs 'moving right' twin of a paired class: only frame order separates them)
  Table 10  vision-text (text head) vs vision-only (learned head) at 1, 2, 4 shots and 25% labels
  Table 9   zero-shot on the 18 held-out classes, w/o and w/ training on the 36 seen
  Figure 4  training loss of vision-text vs vision-only
  Table 4   text input: class name only, one template, 4 templates averaged, 4 templates as text
            augmentation, a learnable template (T-Trans, --table-epochs epochs)
  Table 6   recognition (frozen text head) vs the matching paradigm, text encoder offline and
            online; top-1 and device-minutes (one CPU process: batch gather has nothing to gather)

The protocol on toy world v4 (toy CLIP v2), written and committed before its comparisons ran:
  - seeds 0-4 (--seeds 5); each few-shot K is sampled afresh per seed (--repeats 5);
  - one recipe for every row (TOY_RECIPE): lr 3e-4 for the pre-trained visual encoder and the
    paper's 10x for every new module (temporal module, learned context, and the vision-only
    head, which counts as new); the text head at the pre-trained toy CLIP's own logit scale
    (learned, as the released code does); the vision-only head is the paper's Eq. 1, a plain
    linear layer, whose weights set their own scale;
  - one exception, Table 2's budget: its runs (and so P2's fine-tuned reference and Figure 4's
    vision-text curve, which are Table 2's runs) train the temporal module at 50x (--t2-new-lr-ratio;
    TAP has no new module, so its runs are unchanged by it). Chosen from one 4-epoch pilot per
    module and ratio on seed 100 (not among the seeds): TAP pairs 52.1%, top-1 54.6; T-Trans at
    10x 60.4, 59.3 and at 50x 75.0, 65.3; TokenT1D at 10x 56.3, 58.3 and at 50x 61.5, 56.9. An
    8-epoch pilot was started and stopped unread; nothing else was tried;
  - all-data runs --epochs 4 (864 clips an epoch); few-shot runs --shot-epochs 4 of --epoch-size
    240 clips; Table 4 and 6 runs --table-epochs 4; frames 8;
  - the world (tkvr.data.toy, VERSION 4) was designed from v3's failure of Table 2 (docs/toy.md)
    and fixed on its construction tests and the order probe (P4) alone, before any training run
    on it (the budget pilots came after); the toy CLIP is unchanged. Neither is changed after.

Toy world v3's protocol was the same with 10x for Table 2; its figures are kept in docs/toy.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

PAPER = {  # the direction of each comparison as the paper states it; its numbers are for CLIP on Kinetics
    "table1": "the frozen text head is the best of these heads",
    "table2": "temporal modelling (T-Trans, TokenT1D) improves on TAP",
    "table10": "vision-text beats vision-only, most of all with the least data",
    "table9": "unseen classes are recognised by swapping in their text embeddings, with and without training",
    "premise": "CLIP zero-shot is far above chance and far below fine-tuned accuracy; one example does not "
               "define a class",
    "figure4": "vision-text converges faster than vision-only",
    "table4": "the single hand-written template scores highest; augmentation is 0.64 lower (docs/paper.md, Table 4)",
    "table6": "the recognition paradigm matches the matching paradigm's accuracy; the cost is driven by gathering "
              "the batch across GPUs, not by the online text encoder (docs/paper.md, Table 6)",
}


def tkvr(*args) -> None:
    from tkvr.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as e:
        if e.code:
            raise RuntimeError(f"tkvr {' '.join(map(str, args))} exited with {e.code}") from None


def recipe(epochs: int, workers: int, **over) -> list[str]:
    from tkvr.run.settings import TOY_RECIPE

    r = {**TOY_RECIPE, "epochs": epochs, "workers": workers, **over}
    out = []
    for k, v in r.items():
        out += [f"--{k.replace('_', '-')}", str(v)]
    return out


def ms(xs: list[float], digits: int = 1) -> str:
    m = f"{statistics.fmean(xs):.{digits}f}"
    return f"{m} ± {statistics.pstdev(xs):.{digits}f}" if len(xs) > 1 else m


def pair_accuracy(run: Path) -> tuple[float, float]:
    """(top-1, time-order pair accuracy) of a run's checkpoint on the toy validation split."""
    from tkvr.data.toy import pair_accuracy as pairs
    from tkvr.run.evaluation import predictions

    pred, src = predictions(str(run))
    top1 = 100.0 * (pred["scores"].argmax(1) == pred["label"]).float().mean().item()
    return top1, pairs(pred["scores"], pred["label"], src.classes)


def premise(out: Path, workers: int, seeds: list[int], tuned: list[float]) -> dict:
    """P1-P3 and zero-shot per factor (see the module's docstring); `tuned`: the all-data
    fine-tuned top-1 per seed."""
    import torch
    import torch.nn.functional as F

    from tkvr.data.specs import resolve
    from tkvr.data.toy import TEMPLATES, VERSION, factor_accuracy, still, toy_classes
    from tkvr.model.heads import class_means, fit_lda, one_per_class
    from tkvr.model.video_model import build
    from tkvr.run.evaluation import split_features
    from tkvr.run.settings import TrainConfig

    # P1: the words of the class names among the pretraining captions (the first 5,000 of the
    # pretraining set: examples/pretrain_toy_clip.py draws them from still() with seed 0)
    g = torch.Generator().manual_seed(0)
    caps = [still(g, 64) for _ in range(5000)]
    vocab = {}
    for _, cap, meta in caps:
        for w in cap.rstrip(".").split():
            vocab[w] = vocab.get(w, 0) + 1
    prompt = TEMPLATES[0].replace("{}", "").rstrip(".").split()  # 'a video of'
    words = sorted({w for c in toy_classes() for w in c.split()} | set(prompt))
    missing = [w for w in words if w not in vocab]
    # 'moving left / right' appear only where the still shows a trail in that direction
    motion_ok = all((f"moving {m['motion']}" in cap) or ("moving" not in cap) for _, cap, m in caps) and \
        all(m["motion"] for _, cap, m in caps if "moving" in cap)
    p1 = {"words": {w: vocab.get(w, 0) for w in words}, "missing": missing, "motion_words_mean_motion": motion_ok}

    # features of the pre-trained toy CLIP (TAP, 8 frames, one view) for every train and val video
    src = resolve("toy")
    classes = src.classes
    cfg = TrainConfig.from_flags({"backbone": "toy", "temporal": "tap", "frames": 8, "data": "toy",
                                  "workers": workers, "test_scale": 1.0})
    _, model = build(cfg.model, classes, list(src.templates), seed=cfg.optim.seed)
    feats = {split: split_features(model, src, split, 8, workers) for split in ("train", "val")}
    (xt, yt), (xv, yv) = feats["train"], feats["val"]
    c = len(classes)
    w = F.normalize(model.head.weight.detach().float(), dim=-1)  # the text head [C, D]
    scores = F.normalize(xv, dim=-1) @ w.T  # [N, C]

    def top1(p):
        return 100.0 * (p == yv).float().mean().item()

    js = out / "premise_zeroshot.json"
    if not js.is_file():  # the same number through the command a user runs
        tkvr("zeroshot", "--train", "toy", "--eval", "toy", "--no-train", "--eval-set", "val",
             *recipe(1, workers, temporal="tap"), "--out", out / "premise_zeroshot", "--json", js)
    zero = json.loads(js.read_text())["without_training"]["top1"]
    chance = 100.0 / c
    per_factor = factor_accuracy(scores, yv, classes)
    chances = {"colour": 100 / 8, "shape": 100 / 6, "colour x shape": 100 / 48, "time order": 50.0}

    def score_head(head):
        return top1((F.normalize(xv, dim=-1) @ head.T).argmax(1))

    full = {"ncm": score_head(class_means(xt, yt, c)), "lda": score_head(fit_lda(xt, yt, c))}
    shot = {"ncm": [], "lda": []}
    for seed in seeds:  # one training video per class, drawn per seed
        idx = one_per_class(yt, c, seed)
        shot["ncm"].append(score_head(class_means(xt[idx], yt[idx], c)))
        shot["lda"].append(score_head(fit_lda(xt[idx], yt[idx], c)))
    probe = order_probe(model, src)
    tuned_mean = statistics.fmean(tuned)
    res = {"order_probe": probe, "p1": p1, "zero_shot": zero, "zero_shot_features": top1(scores.argmax(1)), "chance": chance,
           "fine_tuned": tuned, "per_factor": per_factor, "one_shot": shot, "all_data": full,
           "P1": not missing and motion_ok,
           "P2": 3 * chance <= zero <= 0.75 * tuned_mean,
           "P3": all(statistics.fmean(shot[k]) <= 0.6 * full[k] for k in full)}
    print(f"\n### Premise checks (toy world v{VERSION})\n")
    print(f"P1: {len(words)} words in the class names, each in the pretraining captions "
          f"({', '.join(f'{w} {vocab.get(w, 0)}' for w in words)} of 5,000 captions); missing: {missing or 'none'}; "
          f"'moving left/right' only on stills with a trail that way: {motion_ok} -> "
          f"{'holds' if res['P1'] else 'FAILS'}")
    print(f"P2: zero-shot top-1 over {c} classes {zero:.1f}% (chance {chance:.1f}%, {zero / chance:.1f}x); "
          f"all-data fine-tuned (T-Trans, text head) {ms(tuned)}%; ratio {zero / tuned_mean:.2f} "
          f"(needs >= 3x chance and <= 0.75) -> {'holds' if res['P2'] else 'FAILS'}")
    print("P3: " + "; ".join(f"{k.upper()} 1-shot {ms(shot[k])}% vs all data {full[k]:.1f}% "
                             f"(ratio {statistics.fmean(shot[k]) / full[k]:.2f})" for k in full)
          + f" (needs <= 0.6) -> {'holds' if res['P3'] else 'FAILS'}")
    print(f"P4: a linear probe on the first and last images' embeddings (pre-trained toy CLIP) tells a pair's "
          f"direction on {probe['clips']} val clips: {probe['all']:.1f}% (chance 50); per pair "
          + ", ".join(f"{k} {v:.0f}" for k, v in probe["pairs"].items()))
    print("\n| zero-shot, per factor | % | chance % |\n|---|---:|---:|")
    for k, v in per_factor.items():
        print(f"| {k} | {v:.1f} | {chances[k]:.1f} |")
    return res


def order_probe(model, src) -> dict:
    """P4, before any training: a logistic-regression probe on the pre-trained embeddings of a
    paired clip's first and last frames (concatenated, standardised on the train split, L2 0.01),
    fitted on the train split's paired clips, scored on the val split's: does a frame say enough
    for a temporal module to order two of them?"""
    import torch
    import torch.nn.functional as F

    from tkvr.data.toy import factors
    from tkvr.data.transforms import EvalTransform
    from tkvr.data.video import open_reader
    from tkvr.model.video_model import preprocess_of

    tf = EvalTransform(preprocess_of(model), 1)
    model.eval()

    def ends(split):
        x, y, pair = [], [], []
        for s in src.split(split):
            f = factors(src.classes[s.label])
            if f["motion"] is None:
                continue
            r = open_reader(s.path, "torchcodec")
            v = r.read([0, len(r) - 1])  # [2, 3, H, W]
            r.close()
            with torch.no_grad():
                x.append(F.normalize(model.visual(tf(v)[0]).float(), dim=-1).flatten())
            y.append(float(f["motion"] == "right"))
            pair.append(f"{f['colour']} {f['shape']}")
        return torch.stack(x), torch.tensor(y), pair

    (xt, yt, _), (xv, yv, pv) = ends("train"), ends("val")
    mu, sd = xt.mean(0), xt.std(0) + 1e-6
    xt, xv = (xt - mu) / sd, (xv - mu) / sd
    w = torch.zeros(xt.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200)

    def loss():
        opt.zero_grad()
        out = F.binary_cross_entropy_with_logits(xt @ w + b, yt) + 0.01 * (w * w).sum()
        out.backward()
        return out

    opt.step(loss)
    with torch.no_grad():
        hit = ((xv @ w + b > 0).float() == yv).float()
    pairs = {}
    for p in dict.fromkeys(pv):
        idx = [i for i, q in enumerate(pv) if q == p]
        pairs[p] = 100.0 * hit[idx].mean().item()
    return {"all": 100.0 * hit.mean().item(), "clips": len(yv), "pairs": pairs}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", default="runs/replicate")
    ap.add_argument("--epochs", type=int, default=4, help="epochs of the all-data runs")
    ap.add_argument("--t2-new-lr-ratio", type=float, default=50.0, help="Table 2's lr ratio of the temporal module")
    ap.add_argument("--shot-epochs", type=int, default=4, help="epochs of the few-shot runs")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--table-epochs", type=int, default=4, help="epochs of the Table 4 and Table 6 runs")
    ap.add_argument("--only", default="premise,table1,table2,table10,table9,figure4,table4,table6")
    args = ap.parse_args()
    out = Path(args.out)
    only = set(args.only.split(","))
    seeds = list(range(args.seeds))
    res: dict = {}
    t0 = time.time()
    common = recipe(args.shot_epochs, args.workers, temporal="tap")

    def fewshot(name, head, shots, extra=()):
        js = out / f"{name}.json"
        if not js.is_file():
            tkvr("fewshot", "--data", "toy", *common, "--shot-epochs", args.shot_epochs, "--head", head,
                 "--shots", shots, "--repeats", args.seeds,
                 "--epoch-size", 240, "--out", out / name, "--json", js, *extra)
        return json.loads(js.read_text())

    if "table1" in only:
        res["table1"] = {}
        for head, extra in (("text", ()), ("random", ()), ("orthogonal", ()), ("lda", ("--lda-samples", 1))):
            r = fewshot(f"t1_{head}", head, "1", extra)["1"]
            res["table1"][head] = r["runs"]
        print("\n### Table 1 (toy): classifier head, 1-shot, TAP, top-1 % over", args.seeds, "seeds\n")
        print("| head | top-1 % |\n|---|---:|")
        for head, runs in res["table1"].items():
            print(f"| {head} | {ms(runs)} |")
        print(f"\npaper: {PAPER['table1']}")

    def all_data(temporal: str, seed: int) -> Path:
        """Table 2's run: all data, text head (the recipe's)."""
        run = out / f"t2_{temporal}_s{seed}"
        if not (run / "report.json").is_file():
            tkvr("train", "--data", "toy", *recipe(args.epochs, args.workers, temporal=temporal,
                                                  new_lr_ratio=args.t2_new_lr_ratio),
                 "--seed", seed, "--out", run, "--log-every", 1)
        return run

    if "premise" in only:
        res["premise"] = premise(out, args.workers, seeds, [pair_accuracy(all_data("t-trans", s))[0] for s in seeds])

    if "table2" in only:
        res["table2"] = {}
        for temporal in ("tap", "t-trans", "token-t1d"):
            tops, pairs = [], []
            for seed in seeds:
                top1, pair = pair_accuracy(all_data(temporal, seed))
                tops.append(top1)
                pairs.append(pair)
            res["table2"][temporal] = {"top1": tops, "pairs": pairs}
        print("\n### Table 2 (toy): temporal module, all data,", args.epochs, "epochs\n")
        print("| temporal | top-1 % | time-order pairs % (chance 50) |\n|---|---:|---:|")
        for t, r in res["table2"].items():
            print(f"| {t} | {ms(r['top1'])} | {ms(r['pairs'])} |")
        print(f"\npaper: {PAPER['table2']}")

    if "table10" in only:
        res["table10"] = {}
        for head in ("text", "learned"):
            row = {}
            fs = fewshot(f"t10_{head}", head, "1,2,4")
            for k in ("1", "2", "4"):
                row[f"{k}-shot"] = fs[k]["runs"]
            runs = []
            for seed in seeds:
                run = out / f"t10_{head}_lf25_s{seed}"
                if not (run / "report.json").is_file():
                    tkvr("train", "--data", "toy", *recipe(args.epochs, args.workers, temporal="tap"), "--head", head,
                         "--label-fraction", 0.25, "--seed", seed, "--out", run, "--log-every", 1)
                runs.append(json.loads((run / "report.json").read_text())["final"]["top1"])
            row["25% labels"] = runs
            res["table10"][head] = row
        print("\n### Table 10 / Figure 3 (toy): vision-text vs vision-only, TAP\n")
        cols = list(res["table10"]["text"])
        print("| head | " + " | ".join(cols) + " |\n|---|" + "---:|" * len(cols))
        for head, row in res["table10"].items():
            print(f"| {'vision-text (text)' if head == 'text' else 'vision-only (learned)'} | "
                  + " | ".join(ms(row[c]) for c in cols) + " |")
        print(f"\npaper: {PAPER['table10']}")

    if "table9" in only:
        wo, w = [], []
        for seed in seeds:
            js = out / f"t9_s{seed}.json"
            if not js.is_file():
                tkvr("zeroshot", "--train", "toy@seen", "--eval", "toy@unseen",
                     *recipe(args.epochs, args.workers), "--seed", seed, "--out", out / f"t9_s{seed}", "--json", js)
            r = json.loads(js.read_text())
            wo.append(r["without_training"]["top1"])
            w.append(r["with_training"]["top1"])
        res["table9"] = {"without_training": wo, "with_training": w, "chance": 100 / 18}
        print("\n### Table 9 (toy): zero-shot on the 18 held-out classes (chance 5.6%)\n")
        print(f"| row | top-1 % |\n|---|---:|\n| w/o train (toy CLIP) | {ms(wo)} |\n| w/ train on 36 seen | {ms(w)} |")
        print(f"\npaper: {PAPER['table9']}")

    if "figure4" in only:
        # vision-text: the TAP runs of Table 2 (same recipe, text head); vision-only: the same, learned head
        curves = {"text": [], "learned": []}
        for seed in seeds:
            for head in curves:
                run = out / (f"t2_tap_s{seed}" if head == "text" else f"f4_learned_s{seed}")
                if not (run / "report.json").is_file():
                    tkvr("train", "--data", "toy", *recipe(args.epochs, args.workers, temporal="tap"), "--head", head,
                         "--seed", seed, "--out", run, "--log-every", 1)
                rows = list(csv.DictReader((run / "steps.csv").open()))
                curves[head].append([float(r["loss"]) for r in rows])
        res["figure4"] = curves
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        for head, runs in curves.items():
            n = min(len(r) for r in runs)
            mean = [statistics.fmean(r[i] for r in runs) for i in range(n)]
            ax.plot(range(1, n + 1), mean, label=("vision-text" if head == "text" else "vision-only")
                    + f" (mean of {len(runs)} seeds)")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "loss_curves.png", dpi=120)
        print("\n### Figure 4 (toy): training loss, mean of the first / last 10 steps, over seeds\n")
        print("| head | first 10 steps | last 10 steps |\n|---|---:|---:|")
        for h, runs in curves.items():
            first = [statistics.fmean(r[:10]) for r in runs]
            last = [statistics.fmean(r[-10:]) for r in runs]
            print(f"| {'vision-text' if h == 'text' else 'vision-only'} | {ms(first, 3)} | {ms(last, 3)} |")
        print(f"\npaper: {PAPER['figure4']}; curves in {out / 'loss_curves.png'}")

    def t_trans(name: str, *extra) -> tuple[list[float], list[float]]:
        """(top-1 per seed, device-minutes per seed) of T-Trans runs with `extra` flags."""
        tops, minutes = [], []
        for seed in seeds:
            run = out / f"{name}_s{seed}"
            if not (run / "report.json").is_file():
                tkvr("train", "--data", "toy", *recipe(args.table_epochs, args.workers), *extra,
                     "--seed", seed, "--out", run, "--log-every", 1)
            report = json.loads((run / "report.json").read_text())
            tops.append(report["final"]["top1"])
            minutes.append(60 * report["device_hours"])
        return tops, minutes

    # the toy world's video prompt and the caption forms the toy CLIP was trained on
    from tkvr.data.toy import CAPTION_TEMPLATES, TEMPLATES

    TOY_TEMPLATES = TEMPLATES + list(CAPTION_TEMPLATES[:3])

    if "table4" in only:
        several = [a for t in TOY_TEMPLATES for a in ("--template", t)]
        rows = {"class name only": t_trans("t4_name", "--template", "{}"),
                "one template (a video of {}.)": t_trans("t46_single", "--template", TOY_TEMPLATES[0]),
                "4 templates averaged (prompt ensembling)": t_trans("t4_average", *several),
                "4 templates as text augmentation": t_trans("t4_augment", "--template-mode", "augment", *several),
                "learnable template (M = 8)": t_trans("t4_learn", "--template-mode", "learn")}
        res["table4"] = {k: v[0] for k, v in rows.items()}
        print(f"\n### Table 4 (toy): text input, T-Trans, {args.table_epochs} epochs, top-1 %\n")
        print("| text input | top-1 % |\n|---|---:|")
        for k, v in rows.items():
            print(f"| {k} | {ms(v[0])} |")
        print(f"\npaper: {PAPER['table4']}")

    if "table6" in only:
        rows = {"recognition, frozen text head (tkvr)": t_trans("t46_single", "--template", TOY_TEMPLATES[0]),
                "matching, text offline": t_trans("t6_offline", "--template", TOY_TEMPLATES[0],
                                                  "--objective", "matching"),
                "matching, text online": t_trans("t6_online", "--template", TOY_TEMPLATES[0],
                                                 "--objective", "matching", "--text-online")}
        res["table6"] = {k: {"top1": v[0], "device_minutes": v[1]} for k, v in rows.items()}
        print(f"\n### Table 6 (toy): recognition vs matching, T-Trans, {args.table_epochs} epochs\n")
        print("| paradigm | top-1 % | device-minutes per run |\n|---|---:|---:|")
        for k, v in rows.items():
            print(f"| {k} | {ms(v[0])} | {ms(v[1], 2)} |")
        print(f"\npaper: {PAPER['table6']}")

    out.mkdir(parents=True, exist_ok=True)
    saved = out / "replicate.json"
    earlier = json.loads(saved.read_text()) if saved.is_file() else {}
    saved.write_text(json.dumps({**earlier, **res}, indent=1))  # a run of some tables keeps the others
    print(f"\n{time.time() - t0:.0f}s; numbers in {out / 'replicate.json'}")


if __name__ == "__main__":
    main()
