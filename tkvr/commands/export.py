"""tkvr export: a trained run as an ONNX or torch.export file other programs run, with its sidecar."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tkvr.base.fileio import writable
from tkvr.base.settings import Settings, borrow, fail_if, setting
from tkvr.commands.shared import Command
from tkvr.run.settings import Shared


@dataclass
class ExportConfig(Settings):
    checkpoint: str = borrow(Shared, "checkpoint")
    out: str = setting(
        required=True,
        help="The file to write: .onnx (ONNX, checked with onnxruntime) or .pt2 (torch.export); its "
        "sidecar NAME.json (model.onnx.json) says how to feed it.",
    )
    labels: str | None = borrow(
        Shared, "labels", help='Other class names for the head: "a,b,c" or a labels file.'
    )

    def validate(self) -> None:
        problems: list[str] = []
        if Path(self.out).suffix.lower() not in (".onnx", ".pt2"):
            problems.append(f"--out {self.out}: end the name in .onnx (ONNX) or .pt2 (torch.export)")
        writable(problems, "--out", self.out)
        writable(problems, "--out's sidecar", self.out + ".json")
        fail_if(problems)


def run(cfg: ExportConfig) -> dict:
    from tkvr.run.export import export  # deferred: tkvr --help loads no torch

    return export(cfg)


COMMAND = Command(
    "export",
    ExportConfig,
    run,
    """Write a trained run as a file other programs run without tkvr: ONNX or torch.export
    (.pt2), clips [B, T, 3, H, W] in, logits out, checked against tkvr; a JSON sidecar beside it.

    \b
    Example:
      tkvr export --checkpoint runs/k400_b16 --out k400_b16.onnx
    """,
)
