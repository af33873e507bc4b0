"""docs/paper.md conforms to the paper: every `tkvr` command line of the page (outside "Toy forms")
has pinned settings here, and resolves to them on stand-ins of the same data formats with the
backbone as written (`--dry-run`: no weights, no video read). A default that drifts, or a command
line added without its pins, fails here. The pins cite the paper by its line numbers and the
released code (whwu95/Text4Vis) by file and commit, as docs/paper.md does."""
import csv
import re
import shlex
from pathlib import Path

import pytest
import torch
import yaml

DOC = Path(__file__).resolve().parents[1] / "docs" / "paper.md"
DRY = ("train", "fewshot", "zeroshot", "eval")  # the commands with --dry-run
pytestmark = pytest.mark.usefixtures("weights_cached")  # the released weights, as if downloaded


def sections() -> list[tuple[str, list[list[str]], dict]]:
    """(title, every command of the section's bash blocks, {setting: value} of its table) for every
    section after "Toy forms"."""
    out = []
    for part in re.split(r"\n## ", DOC.read_text())[1:]:
        title = part.splitlines()[0]
        if title == "Toy forms":
            continue
        blocks = re.findall(r"```bash\n(.*?)```", part, re.S)
        cmds = [shlex.split(ln) for b in blocks for ln in b.splitlines() if ln.startswith("tkvr ")]
        if cmds:
            rows = re.findall(r"^\| (\w+) \| (.*?) \| .* \|$", part, re.M)
            out.append((title, cmds, {k: value(v) for k, v in rows if k not in ("setting",)}))
    return out


def value(cell: str):
    """A table cell as YAML, except words YAML 1.1 reads as booleans (off, on, yes, no)."""
    v = yaml.safe_load(cell)
    return cell if isinstance(v, bool) and cell not in ("true", "false") else v


ROWS = sections()
LINES = [shlex.join(c) for _, cmds, _ in ROWS for c in cmds]

# ---------------------------------------------------------------- the pins
# The recipe of every video training row (docs/paper.md, "The recipe every training row shares").
VIDEO = dict(
    lr=5e-6,  # paper, line 174
    new_lr_ratio=10.0,  # log exps/k400/ViT-B/16/f8/log.txt at 092ad0a (clip_ratio 0.1)
    weight_decay=0.2, decay="all",  # log at 092ad0a; train.py at 238c07f
    warmup=5.0, schedule="cosine", epochs=30,  # paper, lines 175-176
    betas=[0.9, 0.98],  # paper, line 174 (beta1); train.py at 238c07f (beta2; 0.999 only at d9a6b53)
    batch_size=128,  # paper, line 175
    train_crop="rrc", crop_area=0.08, grayscale=0.2,  # paper, line 173; utils/Augmentation.py at 238c07f
    randaugment="frame",  # log at 092ad0a; train.py at 238c07f (commented out at d9a6b53)
    temporal_layers=6, t_trans_form="released",  # paper, line 212; modules/video_clip.py at 238c07f
    t1d_form="released",  # modules/temporal_modeling.py at 238c07f
    templates=["a video of a person {}."], template_mode="average",  # paper, lines 231-232
    class_names="words", logit_scale="learn", head="text", objective="recognition", label_fraction=1.0,
    test_scale=256 / 224,  # test.py at 238c07f: short side 256 for 224-px input
    views="1x1", view_average="features",  # paper, lines 177-178; test.py at 238c07f
    frames=8,  # paper, line 184
    unfreeze_head=False,  # paper, lines 96-100: the classifier W is frozen during fine-tuning
    batch_gather=False, text_online=False, match_group=None,  # Table 6's matching rows set their own
    # CLIP's own weights and towers (OpenAI's for OpenAI names); no other text source or start
    pretrained=None, visual=None, visual_pretrained=True, embeddings=None, text_encoder=None, init=None,
    t1d_blocks=None, prompt_length=8, lda_samples=60,  # the released TokenT1D blocks; CoOp's 8 (tkvr's)
    label_smoothing=0.0, grad_clip=None,  # neither in the paper or the released train.py at 238c07f
    fold=1,  # UCF-101 / HMDB-51 split 1, as the released lists (092ad0a); resolved 1 elsewhere too
    max_steps=None, limit_batches=None, limit_val_batches=None, recipe="paper",  # whole runs, the paper's recipe
)
IMAGE_TEMPLATES = "imagenet80"  # CLIP's 80 ImageNet prompts (open_clip's list): tkvr's choice
KINETICS_28 = "text4vis28"  # modules/text_prompt.py at 238c07f: 7 phrasings x 4 openings (lines 233-235)


def k400(backbone="ViT-B/16", temporal="t-trans", **over) -> dict:
    """A Kinetics-400 training row: the shared recipe, the row's own settings."""
    return {**VIDEO, "backbone": backbone, "temporal": temporal, "data": "k400", **over}


def imagenet(backbone="ViT-B/16", **over) -> dict:
    """An ImageNet row (paper, lines 284-285: section 4.1's recipe; images are 1-frame clips)."""
    return {**VIDEO, "backbone": backbone, "temporal": "tap", "frames": 1, "templates": IMAGE_TEMPLATES, **over}


EVAL_4X3 = {"views": "4x3", "view_average": "features"}  # paper, line 181; test.py at 238c07f
TIMM_IN = "timm:vit_base_patch16_224.augreg_in21k_ft_in1k"  # Table 3's ImageNet encoder: tkvr's choice
SHOTS = {"shots": ["1", "3", "5", "all"], "shot_schedule": "paper", "shot_epochs": 200}  # paper, Table 8, line 273
B16_TAP = dict(backbone="ViT-B/16", temporal="tap")  # paper, lines 273-274 (Table 8)
D = "tkvr train --data k400 --data-root /data --backbone ViT-B/16 --frames 8"
F = "tkvr fewshot --data {} --data-root /data --backbone ViT-B/16 --frames 8 --temporal tap --shots 1,3,5,all"
Z = "tkvr zeroshot --train {} --eval {} --data-root /data --backbone ViT-L/14 --frames 8 --temporal t-trans"
WO = {"without_training_temporal": "tap"}  # w/o train: the pre-trained CLIP, frames averaged (Tables 9, 11)

PINS = {
    # Table 1: ViT-B/16 T-Trans (81.52 = Table 2's T-Trans row), the head varies (lines 195-206)
    f"{D} --temporal t-trans --head text --out runs/t1_text": k400(),
    f"{D} --temporal t-trans --head random --out runs/t1_random": k400(head="random"),
    f"{D} --temporal t-trans --head orthogonal --out runs/t1_orth": k400(head="orthogonal"),
    f"{D} --temporal t-trans --head lda --out runs/t1_lda": k400(head="lda", lda_samples=60),  # lines 203-204
    f"{D} --temporal t-trans --text-encoder st:distilbert-base-uncased --out runs/t1_distilbert":
        k400(text_encoder="st:distilbert-base-uncased"),  # line 200
    # Table 2: temporal modelling, ViT-B/16 and RN50 (lines 208-215)
    f"{D} --temporal token-t1d --out runs/t2_tokent1d": k400(temporal="token-t1d"),
    f"{D} --temporal tap --out runs/t2_tap": k400(temporal="tap"),
    f"{D} --temporal t-trans --out runs/t2_ttrans": k400(),
    "tkvr train --data k400 --data-root /data --backbone RN50 --frames 8 --temporal tap --out runs/t2_rn50_tap":
        k400("RN50", "tap"),
    "tkvr train --data k400 --data-root /data --backbone RN50 --frames 8 --temporal t1d --out runs/t2_t1d":
        k400("RN50", "t1d"),
    "tkvr train --data k400 --data-root /data --backbone RN50 --frames 8 --temporal t-trans --out runs/t2_rn50_ttrans":
        k400("RN50", "t-trans"),
    # Table 3: TAP (line 189; 80.13 = Table 2's TAP row), vision-only vs vision-text, CLIP vs ImageNet
    f"{D} --temporal tap --head learned --out runs/t3_clip_learned": k400(temporal="tap", head="learned"),
    f"{D} --temporal tap --head text --out runs/t3_clip_text": k400(temporal="tap"),
    f"{D} --temporal tap --head learned --visual {TIMM_IN} --out runs/t3_in_learned":
        k400(temporal="tap", head="learned", visual=TIMM_IN),
    f"{D} --temporal tap --head text --visual {TIMM_IN} --out runs/t3_in_text": k400(temporal="tap", visual=TIMM_IN),
    # Table 4: text input, T-Trans (lines 229-237)
    f"{D} --temporal t-trans --template 'a video of a person {{}}.' --out runs/t4_one": k400(),
    f"{D} --temporal t-trans --template '{{}}' --out runs/t4_name": k400(templates=["{}"]),
    f"{D} --temporal t-trans --template-mode augment --out runs/t4_augment": k400(template_mode="augment", templates=KINETICS_28),
    f"{D} --temporal t-trans --template-mode learn --out runs/t4_learn": k400(template_mode="learn"),
    # Table 5: frames and views
    "tkvr train --data k400 --data-root /data --backbone ViT-B/16 --frames 16 --temporal t-trans --out runs/t5_f16":
        k400(frames=16),
    "tkvr eval --checkpoint RUN --views 4x3": EVAL_4X3,
    "tkvr eval --checkpoint RUN --views 1x1": {"views": "1x1", "view_average": "features"},
    # Table 6: the matching paradigm (lines 242-254)
    f"{D} --temporal t-trans --objective matching --batch-gather --devices 8 --out runs/t6_gather":
        k400(objective="matching", batch_gather=True, devices=8),
    f"{D} --temporal t-trans --out runs/t6_ours": k400(),
    # w/o gather: the matching loss within each of 8 GPUs' 16 clips (lines 253-254, the caption)
    f"{D} --temporal t-trans --objective matching --match-group 16 --out runs/t6_offline":
        k400(objective="matching", match_group=16),
    f"{D} --temporal t-trans --objective matching --text-online --match-group 16 --out runs/t6_online":
        k400(objective="matching", text_online=True, match_group=16),
    f"{D} --temporal t-trans --objective matching --batch-gather --text-online --devices 8 --out runs/t6_gather_online":
        k400(objective="matching", batch_gather=True, text_online=True, devices=8),
    # Table 7: ViT-L/14 32 frames at 224 and 336 px; 336 tests at short side 336 (test.py at 238c07f)
    "tkvr train --data k400 --data-root /data --backbone ViT-L/14 --frames 32 --temporal t-trans --out runs/t7_l14_f32":
        k400("ViT-L/14", frames=32),
    "tkvr train --data k400 --data-root /data --backbone ViT-L/14@336px --frames 32 --temporal t-trans "
    "--out runs/t7_l14_336_f32": k400("ViT-L/14@336px", frames=32, test_scale=1.0),
    # Table 8: ViT-B/16, TAP, K = 1, 3, 5, All (lines 268-275); UCF-101 with the released names
    F.format("k400") + " --repeats 3 --out runs/t8_k400": k400(**B16_TAP, **SHOTS, repeats=3),
    F.format("ucf101") + " --class-names released --repeats 3 --out runs/t8_ucf":
        k400(**B16_TAP, **SHOTS, repeats=3, data="ucf101", class_names="released", randaugment="off"),
    F.format("hmdb51") + " --repeats 3 --out runs/t8_hmdb":
        k400(**B16_TAP, **SHOTS, repeats=3, data="hmdb51", randaugment="off"),
    "tkvr fewshot --data k400 --data-root /data --backbone ViT-B/16 --frames 8 --temporal tap --shots 1,3,5 "
    "--shot-schedule released --out runs/t8_k400_released":
        k400(**B16_TAP, shots=["1", "3", "5"], shot_schedule="released"),  # train.py at 238c07f; 092ad0a configs
    # Table 9: the K400 ViT-L/14 8-frame T-Trans model (README at 036afbe); w/o train is scored by TAP
    Z.format("k400", "ucf101") + " --class-names released --out runs/t9_ucf":
        k400("ViT-L/14", class_names="released", eval_set="all", protocol="full", eval="ucf101", **WO),
    Z.format("k400", "hmdb51") + " --out runs/t9_hmdb": k400("ViT-L/14", eval_set="all", protocol="full", eval="hmdb51", **WO),
    Z.format("k400", "ucf101") + " --class-names released --protocol half --out runs/t9_ucf_half":
        k400("ViT-L/14", class_names="released", eval_set="all", protocol="half", eval="ucf101", **WO),
    Z.format("K300", "K100") + " --out runs/t9_k100":
        k400("ViT-L/14", eval_set="val", protocol="full", data="k400@K300", eval="k400@K100", **WO),
    # the text's "few epochs" (line 279) as 10: Table 12's short schedule (tkvr's reading)
    Z.format("k400", "ucf101") + " --class-names released --epochs 10 --out runs/t9_ucf_few":
        k400("ViT-L/14", class_names="released", eval_set="all", protocol="full", eval="ucf101", epochs=10, **WO),
    # Table 10: ImageNet, ViT-B/16, 10 epochs (82.25 = Table 12's ViT-B/16), K = 0, 1, 3, 5, All
    "tkvr fewshot --data imagenet --data-root /data --backbone ViT-B/16 --frames 1 --head text --shots 1,3,5,all "
    "--epochs 10 --out runs/t10_text": imagenet(**SHOTS, epochs=10, data="imagenet"),
    "tkvr fewshot --data imagenet --data-root /data --backbone ViT-B/16 --frames 1 --head learned --shots 1,3,5,all "
    "--epochs 10 --out runs/t10_learned": imagenet(**SHOTS, epochs=10, head="learned", data="imagenet"),
    "tkvr zeroshot --train imagenet --eval imagenet --no-train --data-root /data --backbone ViT-B/16 "
    "--out runs/t10_zero": imagenet(no_train=True, epochs=None, eval_set="val", data="imagenet", eval="imagenet", **WO),
    # Table 11: IN600 -> IN400 (lines 291-293)
    "tkvr zeroshot --train IN600 --eval IN400 --data-root /data --backbone ViT-B/16 --epochs 10 --out runs/t11":
        imagenet(eval_set="val", protocol="full", data="imagenet@IN600", eval="imagenet@IN400", epochs=10, **WO),
    # Table 12: ImageNet, three backbones, 10 epochs (lines 294-296); 336 px: short side 336
    "tkvr train --data imagenet --data-root /data --backbone ViT-B/16 --frames 1 --epochs 10 --out runs/t12_b16":
        imagenet(epochs=10),
    "tkvr train --data imagenet --data-root /data --backbone ViT-L/14 --frames 1 --epochs 10 --out runs/t12_l14":
        imagenet("ViT-L/14", epochs=10),
    "tkvr train --data imagenet --data-root /data --backbone ViT-L/14@336px --frames 1 --epochs 10 "
    "--out runs/t12_l14_336": imagenet("ViT-L/14@336px", epochs=10, test_scale=1.0),
    "tkvr eval --checkpoint RUN --json e.json": {"views": "1x1", "view_average": "features"},
    # Figure 1: the paper's template (lines 231-232); the vision-only panel is Table 3's TAP run
    "tkvr embed --classes k400 --backbone ViT-B/16 --out k400_text.pt":
        {"head": "text", "templates": ["a video of a person {}."], "classes": 400},
    # the caption's 20 categories, text left and a learned head right (lines 34-46)
    "tkvr plot correlation k400_text.pt runs/t3_clip_learned --pick 20 --out fig1.png":
        {"writes": "fig1.png", "picked": 20, "panels": 2},
    # Figures 3 and 4: vision-only vs vision-text, TAP (lines 186-194)
    f"{D} --temporal tap --label-fraction 0.1 --head learned --out runs/f3_learned_0.1":
        k400(temporal="tap", head="learned", label_fraction=0.1),
    f"{D} --temporal tap --label-fraction 0.1 --head text --out runs/f3_text_0.1": k400(temporal="tap", label_fraction=0.1),
    f"{D} --temporal tap --head learned --out runs/f4_learned": k400(temporal="tap", head="learned"),
    f"{D} --temporal tap --head text --out runs/f4_text": k400(temporal="tap"),
    "tkvr plot loss runs/f4_text runs/f4_learned --out fig4.png": {"writes": "fig4.png"},
}


def test_every_command_line_of_the_doc_is_pinned():
    """A command line added to docs/paper.md without its pins (or a pin whose line is gone) fails."""
    assert sorted(set(LINES) - set(PINS)) == [], "command lines in docs/paper.md without pins"
    assert sorted(set(PINS) - set(LINES)) == [], "pins whose command line is not in docs/paper.md"


def test_every_paper_row_is_documented():
    titles = [t for t, _, _ in ROWS]
    for n in range(1, 13):
        assert any(t.startswith(f"Table {n}:") for t in titles), n
    readme = (DOC.parents[1] / "README.md").read_text()
    for n in list(range(1, 13)):
        assert f"| Table {n} |" in readme, n  # the README's table points at each row
    assert "docs/paper.md" in readme


# ---------------------------------------------------------------- stand-ins
@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    """A data root in the real formats (list files and empty files: --dry-run reads no video):
    Kinetics-400 with all 400 classes (CSVs), UCF-101, HMDB-51 (split files) and an ImageNet of
    1000 class folders; 5 training samples a class (Table 8 draws up to 5)."""
    from torchvision.models._meta import _KINETICS400_CATEGORIES

    root = tmp_path_factory.mktemp("data")
    k = root / "k400"
    for split, n in (("train", 5), ("val", 1)):
        (k / split).mkdir(parents=True)
        with open(k / f"{'validate' if split == 'val' else split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
            for c, name in enumerate(_KINETICS400_CATEGORIES):
                for i in range(n):
                    w.writerow([name, f"{split[0]}{c:03d}x{i}", 10, 20, split])
                    (k / split / f"{split[0]}{c:03d}x{i}_000010_000020.mp4").touch()
    lists = root / "ucf101" / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    (lists / "trainlist01.txt").write_text("".join(f"{c}/v_{c}_g0{i}_c01.avi {y}\n" for y, c in
                                                   ((1, "ApplyEyeMakeup"), (2, "Archery")) for i in range(1, 6)))
    (lists / "testlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g09_c01.avi\nArchery/v_Archery_g09_c01.avi\n")
    splits = root / "hmdb51" / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    for c in ("brush_hair", "cartwheel"):
        (splits / f"{c}_test_split1.txt").write_text("".join(f"{c}_{i}.avi {1 if i < 5 else 2}\n" for i in range(7)))
    for split, n in (("train", 5), ("val", 1)):
        for c in range(1000):
            d = root / "imagenet" / split / f"n{c:08d}"
            d.mkdir(parents=True)
            for i in range(n):
                (d / f"{i}.JPEG").touch()
    return root


@pytest.fixture
def no_cost(monkeypatch):
    """The cost is counted (and tested) elsewhere; here only the settings matter."""
    import tkvr.run.evaluation
    import tkvr.run.protocols
    import tkvr.run.training

    for module in (tkvr.run.training, tkvr.run.protocols, tkvr.run.evaluation):
        monkeypatch.setattr(module, "cost_of", lambda cfg, n: {})


def substitute(cmd: list[str], root: Path, run: Path, tmp: Path) -> list[str]:
    """`tkvr NAME FLAGS` -> [NAME, FLAGS]: the data root, the checkpoint, the runs a plot reads and
    where files go change; every other flag stays as documented (embed builds `tiny`: it runs)."""
    swap = {"--data-root": lambda v: str(root), "--checkpoint": lambda v: str(run),
            "--out": lambda v: str(tmp / Path(v).name), "--json": lambda v: str(tmp / Path(v).name),
            "--plot": lambda v: str(tmp / Path(v).name)}
    if cmd[1] == "embed":
        swap["--backbone"] = lambda v: "tiny"
    out, rest = [cmd[1]], cmd[2:]
    while rest:
        flag = rest.pop(0)
        if flag in swap:
            out += [flag, swap[flag](rest.pop(0))]
        elif flag.startswith("runs/"):  # a plot's input runs
            out.append(str(run))
        elif flag.endswith(".pt"):  # a plot's embeddings file: the stand-in run's classes, as text
            ck = torch.load(Path(run) / "checkpoints" / "last.pt", weights_only=True)
            torch.save({"embeddings": torch.randn(len(ck["classes"]), 8), "classes": ck["classes"],
                        "head": "text"}, tmp / flag)
            out.append(str(tmp / flag))
        else:
            out.append(flag)
    return out


def flat(plan: dict) -> dict:
    """The resolved settings by name; a command's own section (fewshot, zeroshot, eval) wins."""
    out = {}
    for group in ("model", "data", "optim", "run", "device", "auto", "fewshot", "zeroshot", "eval"):
        for k, v in (plan.get(group) or {}).items():
            if not isinstance(v, dict):
                out[k] = v
    return out


PLANS: dict[str, dict] = {}  # documented line -> its plan: a section's table reuses its first line's


def resolved(run_cli, cmd: list[str], line: str | None = None) -> dict:
    if line in PLANS:
        return PLANS[line]
    code, stdout, err = run_cli(*cmd, "--dry-run")
    assert code == 0, (cmd, err)
    plan = yaml.safe_load(stdout)
    if line:
        PLANS[line] = plan
    return plan


def expected(key: str, want):
    if want == IMAGE_TEMPLATES:
        from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

        return [t("{}") for t in OPENAI_IMAGENET_TEMPLATES]
    if want == KINETICS_28:
        return [f"{o} {m}{{}}." for o in ("a photo of", "a video of", "a example of", "a demonstration of")
                for m in ("", "a person ", "a person using ", "a person doing ", "a person during ",
                          "a person performing ", "a person practicing ")]
    return want


def check(got: dict, pins: dict, line: str) -> None:
    for key, want in pins.items():
        want = expected(key, want)
        assert key in got, (line, key)
        if key in ("data", "eval") and isinstance(got[key], str):
            got_name = Path(got[key].split("@")[0]).name + ("@" + got[key].split("@")[1] if "@" in got[key] else "")
            assert got_name == want, (line, key, got[key], want)
        elif isinstance(want, float):  # exact but for the last bits of a computed value
            assert got[key] == pytest.approx(want, rel=1e-9, abs=0), (line, key, got[key], want)
        else:
            assert got[key] == want, (line, key, got[key], want)


@pytest.mark.parametrize("line", sorted(set(LINES)))
def test_command_resolves_to_its_pins(line, run_cli, stand_ins, tiny_run, tmp_path, no_cost):
    cmd = shlex.split(line)
    pins = PINS[line]
    args = substitute(cmd, stand_ins, tiny_run, tmp_path)
    if cmd[1] in DRY:
        plan = resolved(run_cli, args, line)
        got = flat(plan)
        if cmd[1] == "zeroshot":  # the names as the plan gives them
            got["data"], got["eval"] = plan["zeroshot"]["train"], plan["zeroshot"]["eval"]
            if plan["zeroshot"]["no_train"]:
                assert got["temporal"] == "tap"  # w/o train: the pre-trained model, TAP
        elif cmd[1] == "eval":
            got = plan["eval"]
        else:
            got["data"] = Path(got["data"].split("@")[0]).name
        check(got, pins, line)
    elif cmd[1] == "embed":
        code, _, err = run_cli(*args)
        assert code == 0, (line, err)
        out = Path(args[args.index("--out") + 1])
        saved = torch.load(out, weights_only=True)
        got = {"head": saved["head"], "templates": saved["templates"], "classes": len(saved["classes"])}
        check(got, pins, line)
    else:  # plot
        pytest.importorskip("matplotlib")
        from tkvr.run import plots

        panels = []
        real = plots.plot_correlations
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(plots, "plot_correlations", lambda p, *a: panels.extend(p) or real(p, *a))
            code, _, err = run_cli(*args)
        assert code == 0, (line, err)
        assert (tmp_path / pins["writes"]).is_file()
        if "picked" in pins:
            listed = (tmp_path / pins["writes"]).with_suffix(".classes.txt").read_text().splitlines()
            assert (len(listed), len(set(listed)), len(panels)) == (pins["picked"], pins["picked"], pins["panels"])


@pytest.mark.parametrize("title", [t for t, cmds, _ in ROWS if cmds[0][1] in DRY])
def test_section_table_is_its_first_command(title, run_cli, stand_ins, tiny_run, tmp_path, no_cost):
    """The settings table a reader sees beside each section agrees with what its first command runs."""
    _, cmds, table = next(r for r in ROWS if r[0] == title)
    got = flat(resolved(run_cli, substitute(cmds[0], stand_ins, tiny_run, tmp_path), shlex.join(cmds[0])))
    evals = [c for c in cmds[1:] if c[1] == "eval"]
    if evals:  # the row's eval; its checkpoint is a stand-in: only what eval itself decides counts
        plan = resolved(run_cli, substitute(evals[0], stand_ins, tiny_run, tmp_path), shlex.join(evals[0]))
        got.update({k: v for k, v in plan["eval"].items() if k != "test_scale"})
    for key, want in table.items():
        assert key in got, (title, key)
        if isinstance(want, float):  # the page shows 4 significant digits (1.1429 for 256 / 224)
            assert got[key] == pytest.approx(want, rel=1e-4, abs=0), (title, key, got[key])
        else:
            assert got[key] == want, (title, key, got[key], want)


def toy_form(cmd: list[str]) -> list[str]:
    """A row's command on the toy world (docs/paper.md, "Toy forms"): the toy data (seen and unseen
    classes for zero-shot), the toy recipe in place of the backbone, one process, no data root."""
    out, args = [cmd[0], cmd[1]], iter(cmd[2:])
    for a in args:
        if a in ("--data-root", "--backbone", "--devices"):
            next(args)
        elif a == "--data":
            out += ["--data", "toy"] if next(args) else []
        elif a in ("--train", "--eval"):
            out += [a, "toy@seen" if a == "--train" else "toy@unseen"]
            next(args)
        elif a == "--out":
            out += ["--out", next(args).replace("runs/", "runs/toy_")]
        else:
            out.append(a)
    return out + ["--recipe", "toy"]


TOY_ROWS = [(t, cmds[0]) for t, cmds, _ in ROWS if cmds[0][1] in ("train", "fewshot", "zeroshot")]


def test_the_toy_forms_in_the_doc_are_the_rule_applied_to_each_row():
    listed = re.search(r"## Toy forms\n.*?```bash\n(.*?)```", DOC.read_text(), re.S).group(1)
    assert [shlex.split(ln) for ln in listed.splitlines() if ln.startswith("tkvr ")] == [
        toy_form(c) for _, c in TOY_ROWS]


@pytest.mark.parametrize("title, cmd", TOY_ROWS, ids=[t.split(":")[0] for t, _ in TOY_ROWS])
def test_every_toy_form_runs(run_cli, tmp_path, title, cmd, no_cost):
    args = [a.replace("runs/", f"{tmp_path}/") for a in toy_form(cmd)]
    code, out, err = run_cli(*args[1:], "--dry-run")
    assert code == 0, (title, err)
    plan = yaml.safe_load(out[out.index("model:"):])
    assert plan["model"]["backbone"] == "toy" and plan["run"]["recipe"] == "toy"


# ---------------------------------------------------------------- the pins prove themselves
# Pinned values that are not a command's declared default: what a row names (data, eval) or what
# the code decides from other settings (w/o train scores with TAP, whatever --temporal says).
NOT_DEFAULTS = ("data", "eval", "without_training_temporal")


def flags_of(param) -> set[str]:
    return set(param.opts) | set(getattr(param, "secondary_opts", ()))


def mutants(param, value):
    """Other valid values of a setting, nearest first: the drift a changed default would cause."""
    import click

    kind = param.type
    if isinstance(value, bool) or param.is_flag:
        return [not bool(value)]
    if isinstance(kind, click.Choice):
        return [c for c in kind.choices if c != value]
    if param.multiple:
        return [("x {}",)]
    if isinstance(value, float) or kind.name == "float" or getattr(kind, "name", "") == "number":
        base = value if isinstance(value, (int, float)) and value else 1.0
        return [base * (1 + 1e-6), base * 1.5, 2.0]
    if isinstance(value, int) or kind.name == "integer":
        return [(value or 1) + 1, (value or 1) * 2]
    return [f"{value}x" if value else "x", "2x3"]


def default_lines() -> dict[str, list[str]]:
    """Every pinned setting of the dry-run commands -> the documented lines that leave it at its
    default (they do not give its flag)."""
    from tkvr.cli import cli

    out: dict[str, list[str]] = {}
    for line in sorted(set(LINES)):
        cmd = shlex.split(line)
        if cmd[1] not in DRY:
            continue
        params = {p.name: p for p in cli.commands[cmd[1]].params}
        for key in PINS[line]:
            if key not in NOT_DEFAULTS and key in params and not flags_of(params[key]) & set(cmd):
                out.setdefault(key, []).append(line)
    return out


def got_of(cmd: list[str], plan: dict) -> dict:
    """The resolved settings a line's pins are checked against."""
    if cmd[1] == "eval":
        return dict(plan["eval"])
    got = flat(plan)
    if cmd[1] == "zeroshot":
        got["data"], got["eval"] = plan["zeroshot"]["train"], plan["zeroshot"]["eval"]
        got["without_training_temporal"] = plan["zeroshot"]["without_training_temporal"]
    else:
        got["data"] = Path(got["data"].split("@")[0]).name
    return got


def test_the_pins_catch_every_default_that_drifts(run_cli, stand_ins, tiny_run, tmp_path, no_cost):
    """For every pinned setting that some documented line leaves at its default, the command's
    declared default is changed in-process (the click option tkvr derives from the declaration)
    to each other value, the line is resolved again, and wherever the value reaches the resolved
    settings the line's pins must fail (or the line be refused, which fails
    test_command_resolves_to_its_pins). The settings every line states itself (the backbone, the
    frames of video rows, the data) cannot drift by a default."""
    from tkvr.cli import cli

    caught, missed, unreached = {}, [], []
    for key, lines in sorted(default_lines().items()):
        how = None
        for line in lines:
            cmd = shlex.split(line)
            param = next(p for p in cli.commands[cmd[1]].params if p.name == key)
            args = substitute(cmd, stand_ins, tiny_run, tmp_path)
            before = got_of(cmd, resolved(run_cli, args, line)).get(key)
            for value in mutants(param, param.default):
                with pytest.MonkeyPatch.context() as mp:
                    mp.setattr(param, "default", value)
                    code, stdout, err = run_cli(*args, "--dry-run")
                if code != 0:
                    assert code == 2 and "weights" not in err, (key, err)  # the value itself refused
                    how = how or "refused"
                    continue
                got = got_of(cmd, yaml.safe_load(stdout))
                if got.get(key) == before:
                    continue  # the code decides this row's value (e.g. 1 frame for images)
                try:
                    check(got, PINS[line], line)
                    missed.append((key, value, line))
                except AssertionError:
                    how = "pinned"
            if how == "pinned":
                break
        if how:
            caught[key] = how
        else:
            unreached.append(key)
    assert missed == [], f"defaults that drift without a pin noticing: {missed}"
    print(f"{len(caught)} settings mutated, all caught ({sum(v == 'pinned' for v in caught.values())} by a pin, "
          f"the rest refused); reaching no row: {unreached}")
    # --frames: every video line gives it; the image lines' clips are 1 frame whatever it says
    assert unreached == ["frames"] and len(caught) == len(default_lines()) - 1 >= 30, (caught, unreached)


# Settings that change how a run goes, not what it computes (speed, memory, where, how often it
# reports): tests elsewhere hold them equal (augment cpu/device, device_batch by accumulation,
# grad_checkpointing, fused AdamW), or they are a draw's seed. Every other setting of the model,
# data and optimiser groups decides a row's result and must be pinned on every training line.
OPERATIONAL = {"data_root", "decoder", "decode_device", "workers", "max_bad_fraction", "augment", "device_batch",
               "grad_checkpointing", "fused", "seed"}


def test_every_deciding_setting_is_pinned_on_every_training_line():
    from tkvr.base.settings import leaves
    from tkvr.run.settings import TrainConfig

    deciding = {"recipe", "init"}  # (data: every line names it)
    for group in ("model", "data", "optim"):
        deciding |= set(leaves(TrainConfig.__dataclass_fields__[group].default_factory))
    deciding -= OPERATIONAL | {"data"}
    for line, pins in PINS.items():
        if shlex.split(line)[1] in ("train", "fewshot", "zeroshot"):
            assert deciding - set(pins) == set(), (line, sorted(deciding - set(pins)))
