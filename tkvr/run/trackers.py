"""Experiment trackers beside the CSV logs (`--logger`): TensorBoard through Lightning Fabric's
logger, Weights & Biases and MLflow through their own clients (Fabric has loggers for CSV and
TensorBoard only).

Each tracker receives the run's config (flattened: `optim.lr`), the step losses and learning rate
at --log-every, each epoch's validation metrics, and the final report. Only rank 0 logs. A resumed
run continues the same tracker run: its ids are kept in the run folder (trackers.json).

Where each writes, unless its own environment variables say otherwise:
- tensorboard: RUN/tensorboard/ (`tensorboard --logdir RUN`).
- wandb: project `tkvr` (WANDB_PROJECT), files under RUN/wandb/; WANDB_MODE=offline works without
  a network (`wandb sync RUN/wandb/offline-run-*` uploads it later).
- mlflow: MLFLOW_TRACKING_URI (a server), else an SQLite store in the run folder,
  `sqlite:///RUN/mlflow.db`, experiment `tkvr` (MLFLOW_EXPERIMENT_NAME). MLflow 3 refuses its
  plain-file store (in maintenance mode) unless MLFLOW_ALLOW_FILE_STORE is set; SQLite is the
  local store it recommends. `mlflow ui --backend-store-uri sqlite:///RUN/mlflow.db` shows it
  (the UI needs the full `mlflow` package; `tkvr[mlflow]` installs the logging client only).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import secrets
import time
from pathlib import Path

from tkvr.base.errors import TkvrError
from tkvr.base.fileio import atomic_write_text, read_json

# --logger NAME: (module that must import, what to install)
PACKAGES = {
    "csv": (None, None),  # metrics.csv and steps.csv: always written
    "tensorboard": ("tensorboard", "pip install tensorboard"),
    "wandb": ("wandb", "pip install 'tkvr[wandb]'"),
    "mlflow": ("mlflow", "pip install 'tkvr[mlflow]'"),
}


def missing(name: str) -> str | None:
    """What to install for --logger `name`, if its package is not installed (checked without
    importing it)."""
    module, how = PACKAGES[name]
    if module is None or importlib.util.find_spec(module) is not None:
        return None
    return how


def flatten(d: dict, prefix: str = "") -> dict:
    """{"optim": {"lr": 1e-3}} -> {"optim.lr": 1e-3}; lists as text."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v)
    return out


def numbers(values: dict) -> dict:
    """The finite numbers of a row (a tracker's metrics): no text, no missing or NaN cells."""
    return {
        k: float(v)
        for k, v in values.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


class Trackers:
    """The trackers of one run (rank 0): log(values, step) to each, finish(report) at the end."""

    def __init__(self, names: list[str], out: Path, config: dict):
        where = out / "trackers.json"  # the ids a resumed run continues, read as user input
        ids = read_json(where, "the run's trackers.json") if where.is_file() else {}
        flat = flatten(config)
        self.open = []
        for name in names:
            if name != "csv":
                known = dict(ids)
                try:
                    self.open.append(OPEN[name](out, flat, ids))
                except Exception as e:  # noqa: BLE001 - a tracker's own error (no key, no server)
                    raise failed(name, e) from None
                if ids != known:  # at once: a kill before the next tracker opens keeps this one's id
                    atomic_write_text(json.dumps(ids, indent=1), where)

    def log(self, values: dict, step: int) -> None:
        got = numbers(values)
        for t in self.open:
            t.log(got, step)

    def finish(self, report: dict, interrupted: bool = False) -> None:
        """The final report's numbers (final/top1, best_top1, wall_s, ...), then close."""
        final = {f"final/{k}": v for k, v in (report.get("final") or {}).items()}
        summary = numbers({**final, **{k: report.get(k) for k in ("best_top1", "wall_s", "epochs", "steps")}})
        for t in self.open:
            t.finish(summary, interrupted)
        self.open = []


class Board:
    def __init__(self, out: Path, flat: dict, ids: dict):
        from lightning_fabric.loggers import TensorBoardLogger  # deferred: settings import this module

        self.logger = TensorBoardLogger(str(out), name="tensorboard", version="")
        self.logger.log_hyperparams(flat)

    def log(self, values: dict, step: int) -> None:
        self.logger.log_metrics(values, step=step)

    def finish(self, summary: dict, interrupted: bool) -> None:
        self.logger.log_metrics(summary, step=int(summary.get("steps", 0)))
        self.logger.finalize("failed" if interrupted else "success")


class Wandb:
    def __init__(self, out: Path, flat: dict, ids: dict):
        import wandb  # deferred: optional

        ids.setdefault("wandb", secrets.token_hex(4))  # 8 characters, as W&B's own ids
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "tkvr"),
            name=out.name,
            dir=str(out),
            id=ids["wandb"],
            resume="allow",
            config=flat,
            settings=wandb.Settings(console="off", silent=True),
        )

    def log(self, values: dict, step: int) -> None:
        self.run.log(values, step=step)

    def finish(self, summary: dict, interrupted: bool) -> None:
        self.run.summary.update(summary)
        self.run.finish(exit_code=1 if interrupted else 0)


class Mlflow:
    def __init__(self, out: Path, flat: dict, ids: dict):
        from mlflow.entities import Param  # deferred: optional
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{out.resolve() / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=uri)
        known = ids.get("mlflow")
        if known and known.get("uri") == uri:
            self.run_id = known["run_id"]  # a resumed run: its params are logged already
            return
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "tkvr")
        exp = self.client.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(name)
        self.run_id = self.client.create_run(exp_id, run_name=out.name).info.run_id
        ids["mlflow"] = {"uri": uri, "run_id": self.run_id}
        params = [Param(k, str(v)[:6000]) for k, v in flat.items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(self.run_id, params=params[i : i + 100])

    def log(self, values: dict, step: int) -> None:
        from mlflow.entities import Metric  # deferred: optional

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])

    def finish(self, summary: dict, interrupted: bool) -> None:
        self.log(summary, int(summary.get("steps", 0)))
        self.client.set_terminated(self.run_id, "KILLED" if interrupted else "FINISHED")


OPEN = {"tensorboard": Board, "wandb": Wandb, "mlflow": Mlflow}


def logger_problems(problems: list[str], names: list[str]) -> None:
    """--logger: known names, installed packages."""
    for name in names:
        if name not in PACKAGES:
            problems.append(f"--logger {name}: not a logger; use csv, tensorboard, wandb or mlflow")
        elif missing(name):
            problems.append(f"--logger {name} needs its package: {missing(name)}")


def failed(name: str, e: Exception) -> TkvrError:
    return TkvrError(f"--logger {name}: the tracker did not start ({type(e).__name__}: {e})")
