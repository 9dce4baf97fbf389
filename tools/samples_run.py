"""Reads a run folder of `problem: samples` for tools/plot_particles.py and
tests/python/check_samples.py: config.yaml, target.pt {"U": [M, d]}, particles.pt {"Z": [N, d]},
snapshots.pt {"step": [K], "Z": [K, N, d]} (optional), losses.csv and summary.json (optional).
The .pt files are read as data only (join_shards.load: torch.load's weights_only of torch 1.13
refuses the restore_type_tag that every file of mmdflow's holds). Every defect is a BadRun whose
message names the file."""
import csv
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from join_shards import load as load_pt  # noqa: E402
from run_config import load_yaml, parse_yaml, setting  # noqa: E402,F401


class BadRun(Exception):
    pass


def read_config(path):
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise BadRun(f"{path}: {e.strerror}")
    try:
        config = load_yaml(text)
    except Exception as e:  # noqa: BLE001 (any parse error is the file's)
        raise BadRun(f"{path}: not YAML ({str(e).splitlines()[0]})")
    if not isinstance(config, dict):
        raise BadRun(f"{path}: not a mapping of settings")
    return config


def number(config, dotted, default=None):
    """A numeric setting as a float (PyYAML reads 1e-06 as a string: YAML 1.1 wants a dot), or
    default when it is not set; BadRun when it is set but is not a number."""
    value = setting(config, dotted)
    if value is None:
        return default
    try:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    except (TypeError, ValueError):
        raise BadRun(f"config.yaml: {dotted} is {value!r}, not a number")


def tensors(path, dims):
    """The tensors of a .pt file named in dims ({name: number of dimensions}), checked."""
    if not os.path.isfile(path):
        raise BadRun(f"{path}: no such file")
    try:
        obj = load_pt(path)
    except Exception as e:  # noqa: BLE001 (whatever the reader throws, the file is bad)
        raise BadRun(f"{path}: not a .pt file of tensors ({type(e).__name__}: {e})")
    out = {}
    for name, dim in dims.items():
        t = obj.get(name) if isinstance(obj, dict) else None
        if not torch.is_tensor(t):
            raise BadRun(f"{path}: no tensor {name!r}")
        if t.dim() != dim:
            raise BadRun(f"{path}: {name} has shape {list(t.shape)}, not {dim}-dimensional")
        out[name] = t
    return out


class Run:
    """A samples run folder: config, U [M, d], the final Z [N, d] and its step, the snapshots
    (steps [K], Z [K, N, d], or None), the losses.csv rows and summary.json (or None)."""

    def __init__(self, folder):
        if not os.path.isdir(folder):
            raise BadRun(f"{folder}: no such folder")
        self.folder = folder
        self.name = os.path.basename(os.path.normpath(folder))
        self.config = read_config(self.path("config.yaml"))
        if self.config.get("problem") != "samples":
            raise BadRun(f"{self.path('config.yaml')}: problem is {self.config.get('problem')!r}, "
                         "not samples")
        self.U = tensors(self.path("target.pt"), {"U": 2})["U"]
        self.Z = tensors(self.path("particles.pt"), {"Z": 2})["Z"]
        self.d = self.U.shape[1]
        if self.Z.shape[1] != self.d:
            raise BadRun(f"{self.path('particles.pt')}: Z is {list(self.Z.shape)}, the target is "
                         f"{list(self.U.shape)}")
        self.rows = self.read_losses()
        self.summary = self.read_summary()
        self.final_step = (int(self.rows[-1]["epoch"]) if self.rows
                           else int(setting(self.config, "train.epochs", 0) or 0))
        self.steps = self.snapshots = None
        if os.path.exists(self.path("snapshots.pt")):
            s = tensors(self.path("snapshots.pt"), {"step": 1, "Z": 3})
            steps = s["step"].tolist()
            if s["Z"].shape[0] != len(steps) or list(s["Z"].shape[1:]) != list(self.Z.shape):
                raise BadRun(f"{self.path('snapshots.pt')}: Z is {list(s['Z'].shape)}, not "
                             f"[{len(steps)}, {self.Z.shape[0]}, {self.d}]")
            if not steps or steps != sorted(set(steps)) or steps[0] != 0:
                raise BadRun(f"{self.path('snapshots.pt')}: steps {steps[:5]}... are not "
                             "increasing from 0")
            self.steps, self.snapshots = steps, s["Z"]

    def path(self, name):
        return os.path.join(self.folder, name)

    def read_losses(self):
        path = self.path("losses.csv")
        if not os.path.exists(path):
            return []
        try:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            for r in rows:
                r["epoch"] = int(r["epoch"])
                for k in ("train_loss", "valid_loss"):
                    r[k] = float(r[k])
        except (OSError, KeyError, TypeError, ValueError) as e:
            raise BadRun(f"{path}: not a losses file with epoch, train_loss and valid_loss "
                         f"({type(e).__name__}: {e})")
        return rows

    def read_summary(self):
        path = self.path("summary.json")
        if not os.path.exists(path):
            return None
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError) as e:
            raise BadRun(f"{path}: not JSON ({e})")

    def frames(self):
        """{step: Z [N, d]}: the snapshots and the final particles."""
        out = {} if self.steps is None else dict(zip(self.steps, self.snapshots))
        out[self.final_step] = self.Z
        return dict(sorted(out.items()))

    def loss_at(self, step):
        """1/2 MMD^2 after `step` steps from losses.csv (epoch k's valid_loss is after step k,
        epoch k+1's train_loss before step k+1), or None."""
        for r in self.rows:
            if r["epoch"] == step:
                return r["valid_loss"]
        for r in self.rows:
            if r["epoch"] == step + 1:
                return r["train_loss"]
        return None
