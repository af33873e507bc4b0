"""The matching paradigm (Table 6): its loss, batch gather across processes, and training."""
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import fast

from tkvr.model.objectives import matching_loss

FAST = fast(data="toy", lr="1e-4", epochs=1, limit_batches=2)


def batch():
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(6, 8, generator=g), F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    return x, t, torch.tensor([0, 1, 1, 2, 0, 3])  # classes 0 and 1 twice: several positives per row


def encoder():
    torch.manual_seed(1)
    return torch.nn.Linear(8, 8)


def test_matching_loss_counts_every_same_class_pair():
    x, t, y = batch()
    v = F.normalize(x, dim=-1)
    loss = matching_loss(v, t, y)
    target = (y[:, None] == y[None]).float()
    target /= target.sum(1, keepdim=True)
    by_hand = 0.5 * (-(target * (100 * v @ t.T).log_softmax(1)).sum(1).mean()
                     - (target * (100 * t @ v.T).log_softmax(1)).sum(1).mean())
    torch.testing.assert_close(loss, by_hand)
    # texts equal to their videos make the loss small; shuffled ones do not
    assert matching_loss(v, v, y) < matching_loss(v, v[torch.tensor([3, 5, 0, 4, 1, 2])], y)


def _rank(rank, path, queue):
    import torch.distributed as dist

    from tkvr.run.collective import gather_with_grad

    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=2)
    x, t, y = batch()
    out = {}
    for name, part in (("even", slice(0, 3) if rank == 0 else slice(3, 6)),
                       ("uneven", slice(0, 4) if rank == 0 else slice(4, 6))):
        lin = encoder()
        v = F.normalize(lin(x[part]), dim=-1)
        loss = matching_loss(v, t[part], y[part], gather_with_grad)
        loss.backward()
        grad = lin.weight.grad.clone()
        dist.all_reduce(grad)  # what DDP does, before dividing by the world size
        # plain lists: tensors through a Queue share memory that dies with this process
        out[name] = (gather_with_grad(v.detach())[0].tolist(), loss.item(), v.shape[0], (grad / 2).tolist())
    queue.put((rank, out))
    dist.destroy_process_group()


def test_batch_gather_over_two_processes_equals_one_process_on_the_whole_batch(tmp_path):
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_rank, args=(r, str(tmp_path / "pg"), queue)) for r in range(2)]
    for p in procs:
        p.start()
    got = {r: {k: (torch.tensor(g), loss, n, torch.tensor(gr)) for k, (g, loss, n, gr) in out.items()}
           for r, out in (queue.get(timeout=120) for _ in procs)}
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    x, t, y = batch()
    lin = encoder()
    v = F.normalize(lin(x), dim=-1)
    whole = matching_loss(v, t, y)
    whole.backward()
    even = [got[r]["even"] for r in (0, 1)]
    # equal halves: the mean of the two processes' losses (what DDP reports) and their averaged
    # gradients are those of one process on the concatenated batch
    assert abs((even[0][1] + even[1][1]) / 2 - whole.item()) < 1e-4
    torch.testing.assert_close(even[0][3], lin.weight.grad)
    torch.testing.assert_close(even[1][3], lin.weight.grad)
    # uneven batches (a last, short one): every rank still sees all 6 rows in rank order, and
    # the rows-weighted mean of the losses is the whole batch's
    for r in (0, 1):
        torch.testing.assert_close(got[r]["uneven"][0], v.detach())
        torch.testing.assert_close(got[r]["even"][0], v.detach())
    un = [got[r]["uneven"] for r in (0, 1)]
    assert abs((un[0][1] * un[0][2] + un[1][1] * un[1][2]) / 6 - whole.item()) < 1e-4


def test_matching_trains_offline_and_online(run_cli, tmp_path):
    from tkvr.model.backbones import build_backbone
    from tkvr.model.text import encode_classes
    from tkvr.run.checkpoint import read_checkpoint

    for name, extra in (("off", []), ("on", ["--text-online"])):
        code, _, err = run_cli("train", *FAST, "--objective", "matching", *extra, "--out", tmp_path / name)
        assert code == 0, err
        report = json.loads((tmp_path / name / "report.json").read_text())
        assert report["devices"] == 1 and 0 < report["device_hours"] < 1
        assert abs(report["device_hours"] - report["wall_s"] / 3600) < 1e-9
    clip = build_backbone("tiny").clip
    off = read_checkpoint(str(tmp_path / "off"))
    text = encode_classes(build_backbone("tiny"), off["classes"], off["config"]["model"]["templates"])
    assert torch.equal(off["model"]["head.weight"], F.normalize(text, dim=-1))  # offline: the text stays fixed
    on = read_checkpoint(str(tmp_path / "on"))
    assert not torch.equal(on["model"]["head.tower.ln_final.weight"], clip.ln_final.weight.detach())  # online: it trains
    from tkvr.run.checkpoint import load_model

    _, _, model = load_model(on)  # scored with the classifier of the trained text encoder
    torch.testing.assert_close(model.head.weight, model.head.classifier())
    assert not torch.allclose(model.head.weight, F.normalize(text, dim=-1))
    code, _, err = run_cli("train", *FAST, "--batch-gather", "--out", tmp_path / "bad")
    assert code == 2 and "--objective matching" in err


@pytest.mark.slow
def test_matching_with_batch_gather_trains_under_ddp(tmp_path):
    """The engine's gather path: 2 CPU processes, online text encoder; report counts both devices."""
    run = tmp_path / "ddp"
    flags = fast(data="toy", lr="1e-4", epochs=1, limit_batches=2, limit_val_batches=None)  # all 216 val clips
    cmd = [sys.executable, "-m", "tkvr", "train", *flags, "--objective", "matching", "--text-online",
           "--batch-gather", "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--out", str(run)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((run / "report.json").read_text())
    assert report["devices"] == 2 and abs(report["device_hours"] - 2 * report["wall_s"] / 3600) < 1e-9
    assert report["steps"] == 2 and report["final"]["num_samples"] == 216


def test_match_groups_are_the_losses_of_separate_gpus():
    """--match-group N: the mean of each group's own loss (by hand, below) is what N clips on each
    of B / N GPUs without batch gather give (DDP averages the ranks' losses and gradients); the
    gradient too. A group as large as the batch is the plain loss."""
    x, t, y = batch()
    w = encoder()
    v = F.normalize(w(x), dim=-1)
    grouped = matching_loss(v, t, y, group=2)
    by_hand = []
    for i in range(0, 6, 2):  # three 'GPUs' of 2 clips, each its own contrast
        vi, ti, yi = v[i : i + 2], t[i : i + 2], y[i : i + 2]
        target = (yi[:, None] == yi[None]).float()
        target /= target.sum(1, keepdim=True)
        by_hand.append(0.5 * (-(target * (100 * vi @ ti.T).log_softmax(1)).sum(1).mean()
                              - (target * (100 * ti @ vi.T).log_softmax(1)).sum(1).mean()))
    torch.testing.assert_close(grouped, torch.stack(by_hand).mean(), rtol=1e-6, atol=0)
    g1 = torch.autograd.grad(grouped, w.weight, retain_graph=True)[0]
    g2 = torch.autograd.grad(torch.stack(by_hand).mean(), w.weight)[0]
    torch.testing.assert_close(g1, g2)
    torch.testing.assert_close(matching_loss(v, t, y, group=6), matching_loss(v, t, y))
    assert not torch.isclose(grouped, matching_loss(v, t, y))  # fewer negatives: another loss


def test_match_group_flag_checks(run_cli, tmp_path):
    from conftest import assert_user_error

    base = ["train", *FAST, "--out", tmp_path / "r", "--dry-run"]
    code, _, err = run_cli(*base, "--match-group", "4")
    assert_user_error(code, err, "--match-group", "--objective matching")
    code, _, err = run_cli(*base, "--objective", "matching", "--match-group", "5")
    assert_user_error(code, err, "--match-group 5", "16 clips")
    code, _, err = run_cli(*base, "--objective", "matching", "--match-group", "1")
    assert_user_error(code, err, "--match-group 1")
    code, out, err = run_cli(*base, "--objective", "matching", "--match-group", "8")
    assert code == 0, err
    assert "match_group: 8" in out


def test_a_grouped_matching_run_trains_and_records_its_groups(run_cli, tmp_path):
    import yaml

    code, _, err = run_cli("train", *FAST, "--objective", "matching", "--match-group", "8", "--out", tmp_path / "r")
    assert code == 0, err
    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["model"]["match_group"] == 8
