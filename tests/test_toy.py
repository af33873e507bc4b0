import torch

from tkvr.data.specs import resolve
from tkvr.data.toy import direction_pair, make_clip, toy_classes, unseen_classes
from tkvr.data.video import VideoFile


def test_left_and_right_are_time_reversals():
    a = make_clip("red", "circle", "left", torch.Generator().manual_seed(5))
    b = make_clip("red", "circle", "right", torch.Generator().manual_seed(5))
    assert torch.equal(a, b.flip(0))  # same frames, opposite order: only order tells them apart
    assert not torch.equal(a[0], a[-1])


def test_classes_pairs_and_held_out_combinations():
    classes = toy_classes()
    assert len(classes) == 60 and len(set(classes)) == 60
    assert "a red circle moving left" in classes
    for c in classes:
        assert direction_pair(c) in classes and direction_pair(direction_pair(c)) == c
    unseen = unseen_classes()
    combos = {c.rsplit(" moving", 1)[0] for c in unseen}
    assert len(unseen) == 20 and len(combos) == 5
    seen_combos = {c.rsplit(" moving", 1)[0] for c in classes if c not in unseen}
    assert not combos & seen_combos  # held out in every direction


def test_toy_dataset_is_real_video_files():
    src = resolve("toy")
    assert src.flip is False and len(src.classes) == 60
    train, val = src.split("train"), src.split("val")
    assert len(train) == 60 * 8 and len(val) == 60 * 4
    assert {s.path for s in train}.isdisjoint({s.path for s in val})
    v = VideoFile(train[0].path, "pyav")
    assert len(v) == 16 and v.read([0, 15]).shape == (2, 3, 64, 64)
    seen, unseen = resolve("toy@seen"), resolve("toy@unseen")
    assert len(seen.classes) == 40 and len(unseen.classes) == 20
    assert not {s.path for s in seen.split("train")} & {s.path for s in unseen.split("train")}
    assert unseen.classes == unseen_classes()


def test_shipped_toy_clip_loads_and_matches_its_config():
    import json

    from tkvr.model import CONFIG_DIR, SHIPPED, build_backbone

    state = torch.load(SHIPPED["toy"], weights_only=True)
    assert SHIPPED["toy"].stat().st_size < 8 * 2 ** 20  # a few MB, in the package
    cfg = json.loads((CONFIG_DIR / "tkvr-toy.json").read_text())
    bb = build_backbone("toy")
    model_state = bb.clip.state_dict()
    assert state.keys() == model_state.keys()
    for k, v in state.items():
        assert v.shape == model_state[k].shape, k
        torch.testing.assert_close(model_state[k], v.float(), rtol=0, atol=0)  # the file's weights, loaded
    assert bb.dim == cfg["embed_dim"] and bb.image_size == cfg["vision_cfg"]["image_size"]
    random_init = build_backbone("toy", "none").clip.state_dict()
    assert not torch.equal(random_init["visual.conv1.weight"], model_state["visual.conv1.weight"])


def test_toy_clip_stills_know_colour_and_shape():
    """The shipped toy CLIP matches new captioned stills to their colour x shape names."""
    import torch.nn.functional as F

    from tkvr.data.toy import COLOURS, SHAPES, still
    from tkvr.model import build_backbone

    bb = build_backbone("toy")
    g = torch.Generator().manual_seed(1234)
    imgs, truth = [], []
    names = [f"{c} {s}" for c in COLOURS for s in SHAPES]
    for _ in range(150):
        img, cap = still(g, 64)
        imgs.append(F.interpolate(img[None].float(), size=(bb.image_size,) * 2, mode="bilinear", antialias=True)[0])
        truth.append(next(i for i, n in enumerate(names) if n in cap))
    mean = torch.tensor(bb.preprocess["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(bb.preprocess["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        img = F.normalize(bb.clip.encode_image((torch.stack(imgs) / 255 - mean) / std), dim=-1)
        txt = F.normalize(bb.clip.encode_text(bb.tokenizer([f"a photo of a {n}." for n in names])), dim=-1)
    acc = ((img @ txt.T).argmax(1) == torch.tensor(truth)).float().mean().item()
    assert acc > 0.6, acc  # chance is 1/15


def test_pair_accuracy_counts_only_the_direction_pair():
    from tkvr.data.toy import pair_accuracy

    classes = toy_classes()
    labels = torch.tensor([0, 1, 2, 3])  # red circle: left, right, up, down
    scores = torch.zeros(4, 60)
    scores[torch.arange(4), labels] = 0.6
    scores[:, 59] = 0.9  # a different class scoring higher does not matter here
    assert pair_accuracy(scores, labels, classes) == 100.0
    scores[0, 1] = 0.7  # 'left' clip: 'right' beats it
    assert pair_accuracy(scores, labels, classes) == 75.0
