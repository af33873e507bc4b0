import torch

from tkvr.data.specs import resolve
from tkvr.data.toy import (
    COLOURS,
    SHAPES,
    TEMPLATES,
    direction_pair,
    factors,
    make_clip,
    neighbours,
    still,
    toy_classes,
    unseen_classes,
)
from tkvr.data.video import VideoFile


def test_left_and_right_are_time_reversals():
    a = make_clip("red", "diamond", "left", torch.Generator().manual_seed(5))
    b = make_clip("red", "diamond", "right", torch.Generator().manual_seed(5))
    assert torch.equal(a, b.flip(0))  # same frames, opposite order: only order tells them apart
    assert not torch.equal(a[0], a[-1])


def test_clips_of_one_class_vary():
    """One video does not define a class: size, place, lighting and clutter differ clip to clip."""
    g = torch.Generator().manual_seed(0)
    a, b = make_clip("blue", "ring", None, g), make_clip("blue", "ring", None, g)
    assert a.shape == b.shape == (16, 3, 64, 64)
    assert (a.float() - b.float()).abs().mean() > 10  # not the same picture with a shift


def test_a_video_shows_where_its_object_is_by_its_size():
    """Perspective: an object's size grows from the left edge to the right, so a pair's first
    and last images differ in size, the other way round for its twin."""
    from tkvr.data.toy import Scene

    sc = Scene("teal", "ring", torch.Generator().manual_seed(0), video=True)
    lo, hi = sc.bounds()
    assert abs(sc.radius(0) - 0.5 * sc.r) < 1e-6 and abs(sc.radius(64) - 1.5 * sc.r) < 1e-6
    assert sc.radius(hi) > 1.5 * sc.radius(lo)  # across the room a pair's object may travel
    right = make_clip("teal", "ring", "right", torch.Generator().manual_seed(1))
    assert (right[-1].float() - right[0].float()).abs().mean() > 3  # its first and last images differ


def test_classes_pairs_and_held_out_combinations():
    classes = toy_classes()
    assert len(classes) == 54 and len(set(classes)) == 54
    assert "a red circle" in classes and "an orange ring" in classes and "a red diamond moving left" in classes
    paired = [c for c in classes if direction_pair(c)]
    assert len(paired) == 24  # twelve time-reversal pairs; 30 classes tell apart in one frame
    for c in paired:
        assert direction_pair(c) in classes and direction_pair(direction_pair(c)) == c
    assert {factors(c)["colour"] for c in classes} == set(COLOURS) and {factors(c)["shape"] for c in classes} == set(SHAPES)
    unseen = unseen_classes()
    combos = {c.split(" moving")[0] for c in unseen}
    assert len(unseen) == 18 and len(combos) == 14  # 10 single classes and 4 pairs
    seen = [c for c in classes if c not in unseen]
    seen_combos = {c.split(" moving")[0] for c in seen}
    assert not combos & seen_combos  # a held-out pair is held out in both directions
    seen_words = {w for c in seen for w in c.split()}
    assert {w for c in unseen for w in c.split()} <= seen_words  # every unseen word is seen in training


def test_pretraining_captions_use_every_class_word_in_its_meaning():
    """P1: each word of each class name (and of the prompt) occurs in the toy CLIP's captions;
    'left' and 'right' only as 'moving left / right' on a still whose trail shows that motion;
    a colour word names the shown colour or a hue neighbour of it."""
    g = torch.Generator().manual_seed(0)
    shown = [still(g, 64) for _ in range(2000)]
    words = {w for _, cap, _ in shown for w in cap.rstrip(".").split()}
    needed = {w for c in toy_classes() for w in c.split()} | set(TEMPLATES[0].replace("{}.", "").split())
    assert needed <= words, needed - words
    for img, cap, meta in shown:
        ws = cap.rstrip(".").split()
        assert img.shape == (3, 64, 64) and img.dtype == torch.uint8
        for side in ("left", "right"):
            if side in ws:
                assert ws[ws.index(side) - 1] == "moving" and meta["motion"] == side, cap
        said = [w for w in ws if w in COLOURS]
        assert said in ([], [meta["colour"]]) or (len(said) == 1 and said[0] in neighbours(meta["colour"])), cap
    motions = [m["motion"] for _, _, m in shown]
    assert 0.15 < sum(m is not None for m in motions) / len(motions) < 0.35
    colours = [m["said_colour"] for _, _, m in shown]
    assert 0.05 < sum(c not in (None, m["colour"]) for c, (_, _, m) in zip(colours, shown)) / len(shown) < 0.2


def test_toy_dataset_is_real_video_files():
    src = resolve("toy")
    assert src.flip is False and len(src.classes) == 54
    train, val = src.split("train"), src.split("val")
    assert len(train) == 54 * 16 and len(val) == 54 * 4
    assert {s.path for s in train}.isdisjoint({s.path for s in val})
    v = VideoFile(train[0].path, "pyav")
    assert len(v) == 16 and v.read([0, 15]).shape == (2, 3, 64, 64)
    seen, unseen = resolve("toy@seen"), resolve("toy@unseen")
    assert len(seen.classes) == 36 and len(unseen.classes) == 18
    assert not {s.path for s in seen.split("train")} & {s.path for s in unseen.split("train")}
    assert unseen.classes == unseen_classes()


def test_shipped_toy_clip_loads_and_matches_its_config():
    import json

    from tkvr.model.backbones import CONFIG_DIR, SHIPPED, build_backbone

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
    """The shipped toy CLIP matches new stills to their colour x shape names (the truth, which
    noisy captions sometimes miss): coarsely, far above chance."""
    import torch.nn.functional as F

    from tkvr.data.toy import article
    from tkvr.model.backbones import build_backbone

    bb = build_backbone("toy")
    g = torch.Generator().manual_seed(1234)
    imgs, truth = [], []
    names = [f"{c} {s}" for c in COLOURS for s in SHAPES]
    for _ in range(150):
        img, _, meta = still(g, 64)
        imgs.append(F.interpolate(img[None].float(), size=(bb.image_size,) * 2, mode="bilinear", antialias=True)[0])
        truth.append(names.index(f"{meta['colour']} {meta['shape']}"))
    mean = torch.tensor(bb.preprocess["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(bb.preprocess["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        img = F.normalize(bb.clip.encode_image((torch.stack(imgs) / 255 - mean) / std), dim=-1)
        txt = F.normalize(bb.clip.encode_text(bb.tokenizer([f"a photo of {article(n)} {n}." for n in names])), dim=-1)
    acc = ((img @ txt.T).argmax(1) == torch.tensor(truth)).float().mean().item()
    assert acc > 0.6, acc  # chance is 1/48; 85% on 1,000 stills when the weights were made


def test_pair_accuracy_counts_only_the_paired_classes():
    from tkvr.data.toy import pair_accuracy

    classes = toy_classes()
    left, right = classes.index("a red diamond moving left"), classes.index("a red diamond moving right")
    single = classes.index("a red circle")
    labels = torch.tensor([left, right, single])
    scores = torch.zeros(3, 54)
    scores[torch.arange(3), labels] = 0.6
    scores[:, 53] = 0.9  # a different class scoring higher does not matter here
    assert pair_accuracy(scores, labels, classes) == 100.0
    scores[0, right] = 0.7  # the 'left' clip: its twin 'right' beats it
    assert pair_accuracy(scores, labels, classes) == 50.0  # the single class's clip is not counted


def test_an_order_blind_model_cannot_tell_a_pair_apart():
    """Item 1 of the toy world's design: under every view tkvr takes at the toy recipe's 8 frames
    (training's random frame per segment; the test protocol's 1 and 4 clips, 1 and 3 crops), a
    clip and its reversal show the same multiset of images, written files decode to the same images
    backwards, and TAP (the mean over frames) scores a clip and its reversal alike."""
    import random

    from tkvr.data.sampling import segment_indices
    from tkvr.data.toy import HOLD, write_video
    from tkvr.data.transforms import EvalTransform
    from tkvr.data.video import open_reader
    from tkvr.model.video_model import build, preprocess_of
    from tkvr.run.settings import TrainConfig

    clip = make_clip("purple", "circle", "right", torch.Generator().manual_seed(3))  # [16, 3, 64, 64]
    n, t = len(clip), 8
    image = list(range(n // HOLD))
    held = [i // HOLD for i in range(n)]  # frame -> the image it holds
    back = [held[n - 1 - i] for i in range(n)]  # the same for the reversed clip
    views = [segment_indices(n, t, False, c, clips) for clips in (1, 2, 4) for c in range(clips)]
    rng = random.Random(0)
    views += [segment_indices(n, t, True, rng=rng) for _ in range(50)]
    for idx in views:
        assert sorted(held[i] for i in idx) == sorted(back[i] for i in idx) == image, idx

    import tempfile

    with tempfile.TemporaryDirectory() as d:
        write_video(clip, f"{d}/r.mp4", 8, intra=True)
        write_video(clip.flip(0), f"{d}/l.mp4", 8, intra=True)
        ra, rb = (open_reader(f"{d}/{x}.mp4", "torchcodec") for x in "rl")
        fwd, rev = ra.read(list(range(n))), rb.read(list(range(n)))
        ra.close(), rb.close()
    assert torch.equal(fwd.flip(0), rev)  # key frames at one quantiser: nothing depends on order

    src = resolve("toy", write=False)
    cfg = TrainConfig.from_flags({"backbone": "toy", "temporal": "tap", "frames": t})
    _, model = build(cfg.model, src.classes, list(TEMPLATES), seed=0)
    model.eval()
    tf = EvalTransform(preprocess_of(model), 3)
    with torch.no_grad():
        for clips in (1, 4):
            idx = [segment_indices(n, t, False, c, clips) for c in range(clips)]
            a = torch.cat([tf(fwd[i]) for i in idx])  # [clips * 3, T, 3, H, W]
            b = torch.cat([tf(rev[i]) for i in idx])
            sa, sb = model(a).mean(0), model(b).mean(0)  # [C]: the views' scores averaged
            assert torch.allclose(sa, sb, atol=1e-5), (sa - sb).abs().max()


def test_first_and_last_frame_embeddings_tell_a_pairs_direction():
    """Item 2: the pre-trained toy CLIP's embedding of a clip's first and last images says enough
    for a temporal module to order them: a linear probe on the two (concatenated) separates left
    from right on clips it was not fitted on. Small: 10 clips per class of the 12 pairs, drawn
    without video coding (the full figure on the written world: docs/toy.md)."""
    import torch.nn.functional as F

    from tkvr.data.toy import PAIRED
    from tkvr.data.transforms import EvalTransform
    from tkvr.model.video_model import build, preprocess_of
    from tkvr.run.settings import TrainConfig

    cfg = TrainConfig.from_flags({"backbone": "toy", "temporal": "tap", "frames": 8})
    _, model = build(cfg.model, toy_classes(), list(TEMPLATES), seed=0)
    model.eval()
    tf = EvalTransform(preprocess_of(model), 1)
    g = torch.Generator().manual_seed(0)
    x, y = [], []
    for k in range(10):
        for colour, shape in PAIRED:
            for right in (0, 1):
                ends = make_clip(colour, shape, "right" if right else "left", g)[[0, -1]]  # [2, 3, 64, 64]
                with torch.no_grad():
                    x.append(F.normalize(model.visual(tf(ends)[0]).float(), dim=-1).flatten())  # [2 * D]
                y.append(right)
    x, y = torch.stack(x), torch.tensor(y, dtype=torch.float32)
    fit, test = slice(0, 6 * 24), slice(6 * 24, None)  # 6 clips per class to fit, 4 to test
    mu, sd = x[fit].mean(0), x[fit].std(0) + 1e-6
    x = (x - mu) / sd
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200)

    def loss():
        opt.zero_grad()
        out = F.binary_cross_entropy_with_logits(x[fit] @ w + b, y[fit]) + 0.01 * (w * w).sum()
        out.backward()
        return out

    opt.step(loss)
    with torch.no_grad():
        acc = ((x[test] @ w + b > 0).float() == y[test]).float().mean().item()
    assert acc >= 0.8, acc  # chance is 0.5; an order-blind summary (the two averaged) is at chance
