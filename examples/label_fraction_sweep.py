"""Figure 3 of the paper: top-1 against the fraction of labelled training data, vision-text
(frozen text head) vs vision-only (learned head).

    python examples/label_fraction_sweep.py --data toy --backbone toy --fractions 0.05,0.1,0.25,0.5,1 \
        --out runs/label_fraction [-- extra tkvr train flags]

Each point is one `tkvr train --label-fraction F` run (stratified, seeded); the curve is drawn by
`tkvr plot fractions OUT` to OUT/label_fraction.png and the numbers written to
OUT/label_fraction.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="toy")
    ap.add_argument("--backbone", default="toy")
    ap.add_argument("--fractions", default="0.05,0.1,0.25,0.5,1")
    ap.add_argument("--out", default="runs/label_fraction")
    ap.add_argument("extra", nargs="*", help="more tkvr train flags, after --")
    args = ap.parse_args()
    from tkvr.cli import main as tkvr

    out = Path(args.out)
    fractions = [float(f) for f in args.fractions.split(",")]
    curves: dict[str, list[float]] = {"vision-text (text head)": [], "vision-only (learned head)": []}
    for head, name in (("text", "vision-text (text head)"), ("learned", "vision-only (learned head)")):
        for f in fractions:
            run = out / f"{head}_{f:g}"
            try:
                tkvr(["train", "--data", args.data, "--backbone", args.backbone, "--head", head,
                      "--label-fraction", str(f), "--out", str(run), *args.extra])
            except SystemExit as e:
                if e.code:
                    raise
            report = json.loads((run / "report.json").read_text())
            curves[name].append(report["final"]["top1"])
    (out / "label_fraction.json").write_text(json.dumps({"fractions": fractions, **curves}, indent=1))
    # the figure is `tkvr plot fractions` over these runs: one drawing of Figure 3, wherever it is made
    tkvr(["plot", "fractions", str(out), "--out", str(out / "label_fraction.png")])

if __name__ == "__main__":
    main()
