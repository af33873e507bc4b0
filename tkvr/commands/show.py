"""How each command shows its result on the terminal (rank 0). The work happened in the library;
these functions only print, each given the result and the command's settings."""

from __future__ import annotations

from rich.table import Table

from tkvr.base.choices import parse_views
from tkvr.base.errors import Fault
from tkvr.base.progress import console, count, say
from tkvr.run.protocols import fmt


def embedded(res: dict, cfg) -> None:
    emb = res["embeddings"]
    say(
        f"wrote {cfg.out}: {cfg.head} embeddings [{emb.shape[0]}, {emb.shape[1]}] for "
        f"{count(len(res['classes']), 'class')}, backbone {cfg.backbone}, "
        f"{count(len(res['templates']), 'template')}"
        + (f", text encoder {cfg.text_encoder}" if cfg.text_encoder else "")
    )
    if cfg.plot:
        say(f"wrote {cfg.plot}: inter-class correlation map")


def checked(r: dict, cfg) -> None:
    classes, sizes = r["classes"], r["samples_per_class"]
    table = Table(title=f"{r['data']} / {r['split']}: samples per class")
    table.add_column("id", justify="right")
    table.add_column("class")
    table.add_column("samples", justify="right")
    for y, name in enumerate(classes):
        table.add_row(str(y), name, str(sizes[y]))
    if len(classes) <= 60:
        console().print(table)
    say(
        f"{count(r['num_samples'], 'sample')}, {count(len(classes), 'class')} (per class: min {min(sizes)}, "
        f"max {max(sizes)}); decoder {r['decoder']}"
    )
    if r["listed_not_on_disk"]:
        listed = count(len(r["listed_not_on_disk"]), "video")
        say(f"{listed} listed in the annotations are not on disk (left out)")
    unread = [p for p in r["unreadable"] if p not in set(r["missing"]) | set(r["empty"])]
    for kind, paths in (("missing", r["missing"]), ("empty", r["empty"]), ("unreadable", unread)):
        for p in paths[:20]:
            say(f"{kind}: {p} ({r['notes'][p]})")
        if len(paths) > 20:
            say(f"... and {len(paths) - 20} more {kind}")
    empty_classes = [classes[y] for y in range(len(classes)) if sizes[y] == 0]
    if empty_classes:
        say(f"{count(len(empty_classes), 'class')} with no {r['split']} samples (e.g. {empty_classes[:3]})")
    bad = len(r["unreadable"])
    say("all samples read" if not bad else f"{bad} of {r['num_samples']} samples do not read")


def check_status(r: dict) -> int:
    return 1 if r["unreadable"] else 0


def evaluated(report: dict, cfg) -> None:
    t = Table(title=f"{report['data']} / {report['split']}, views {report['views']}")
    for col in ("top-1 %", "top-5 %", "mean class %", "samples", "GFLOPs x views", "params (M)"):
        t.add_column(col, justify="right")
    c, s = parse_views(report["views"])
    t.add_row(
        f"{report['top1']:.2f}",
        f"{report['top5']:.2f}",
        f"{report['mean_class_accuracy']:.2f}",
        str(report["num_samples"]),
        f"{report['gflops_per_view']:.3g} x {c * s}",
        f"{report['params_m']:.2f}",
    )
    console().print(t)
    if report["unreadable"]:
        say(f"{len(report['unreadable'])} unreadable videos left out, e.g. {report['unreadable'][0]}")


def fewshot_table(results: dict, cfg) -> None:
    head, data = cfg.train.model.head, cfg.train.data.data
    t = Table(title=f"few-shot {data}, head {head}: top-1 % (mean ± std over seeds)")
    t.add_column("shots", justify="right")
    t.add_column("top-1 %", justify="right")
    t.add_column("runs", justify="right")
    for k, v in results.items():
        t.add_row(str(k), f"{v['top1']:.2f} ± {v['std']:.2f}", str(len(v["runs"])))
    console().print(t)


def zeroshot_table(out: dict, cfg) -> None:
    t = Table(title=f"zero-shot: train {out['train']}, eval {out['eval']} ({out['protocol']} protocol)")
    t.add_column("row")
    t.add_column("top-1 %", justify="right")
    names = {"without_training": "w/o train (pre-trained, TAP)", "with_training": "w/ train on seen classes"}
    for k, name in names.items():
        if k in out:
            by = out[k].get("scored_by", {})
            if "checkpoint" in by:
                name = f"w/o train: {by['checkpoint']}"
            elif k == "with_training" and by:
                name += f" ({by['temporal']})"
            t.add_row(name, fmt(out[k]).rstrip("%"))
    console().print(t)


SHOWN = 20  # inputs printed; --out and --json hold them all


def predicted(results: list[dict], cfg) -> None:
    con = console()
    for r in results[:SHOWN]:
        if "error" in r:
            con.print(f"{r['file']}: unreadable ({r['error']})", markup=False)
        elif "segments" in r:
            con.print(f"{r['file']}: {len(r['windows'])} windows", markup=False)
            for s in r["segments"]:
                con.print(
                    f"  {s['start']:8.2f}-{s['end']:8.2f}s  {s['score']:6.3f}  {s['label']}", markup=False
                )
        else:
            con.print(r["file"], markup=False)
            for lab, s in zip(r["labels"], r["scores"]):
                con.print(f"  {s:6.3f}  {lab}", markup=False)
    if len(results) > SHOWN:
        where = " and ".join(f"--{k} {v}" for k, v in (("out", cfg.out), ("json", cfg.json)) if v)
        con.print(f"... {len(results) - SHOWN} more" + (f" in {where}" if where else ""))


def predict_status(results: list[dict]) -> int:
    bad = [r for r in results if "error" in r]
    if bad:  # the others' labels are printed and written; the exit code says not all were read
        raise Fault(f"{len(bad)} of {len(results)} inputs could not be read (e.g. {bad[0]['error']})")
    return 0


def plotted(drawn, cfg) -> None:
    names = dict(correlation="Figure 1", fractions="Figure 3", loss="Figure 4")
    say(f"wrote {cfg.out}: {cfg.figure} ({names[cfg.figure]})")


def backbones_table(rows: list[dict], cfg) -> None:
    t = Table(title="--backbone names (--pretrained tags; * cached here, usable offline)")
    t.add_column("backbone")
    t.add_column("kind")
    t.add_column("--pretrained")
    for r in rows:
        tags = [f"{x}*" if x in r["cached"] else x for x in r["pretrained"]]
        t.add_row(r["backbone"], r["kind"], ", ".join(tags))
    console().print(t)
    say("any open_clip model also takes --pretrained PATH (a local file); hf-hub:ORG/REPO names work too")
