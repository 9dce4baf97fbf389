#!/usr/bin/python3
"""Plot mmdflow loss curves on a log scale to a PNG.

  plot_losses.py RUN [RUN ...] -o losses.png        one or several run folders (losses.csv)
  plot_losses.py SWEEP [SWEEP ...] -o figure.png    sweep folders (curves.csv): per setting,
                                                    the geometric mean over seeds and a band of
                                                    x/÷ one geometric standard deviation (the
                                                    spread of log loss), which a log scale shows
                                                    whole

Each curve is labelled by its setting and seed, read from the runs' config.yaml and the sweep's
layout (OUT/<setting>/seed<k>/): by its setting's name in a sweep (its folder's name otherwise),
the keys in which its config differs from the other curves' (those that act on it: no λ outside
DrMMD, no β schedule without noise), and its seed or number of seeds.
The settings that all curves share are written under the title.
"""
import argparse
import csv
import math
import os
import re
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_config import flatten, load_yaml  # noqa: E402

# Keys that do not change a curve (or that the label gives already): never shown as a difference.
IGNORED = re.compile(r"^(seed|threads|device|log\..*|compare\..*|dist\..*|sweep\..*|"
                     r"train\.checkpoint_every)$")
# Short names of the keys a reader looks for first.
SHORT = {"student.layout": "layout", "student.particles": "N", "teacher.particles": "M",
         "data.dim": "d", "model.hidden": "H", "flow.method": "flow", "flow.step_size": "γ",
         "noise.beta0": "β₀", "noise.every": "β every", "noise.factor": "β factor",
         "train.epochs": "epochs", "train.batch": "batch", "target.size": "M",
         "kernel.bandwidth": "σ", "flow.drmmd_lambda": "λ"}
DASHES = [(None, None), (6, 2), (2, 1.5), (7, 2, 2, 2), (12, 3), (3, 1, 1, 1, 1, 1)]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_config(folder):
    """A run folder's config.yaml as {dotted key: value}, or {} when it has none."""
    path = os.path.join(folder, "config.yaml")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        try:
            config = load_yaml(f.read())
        except Exception as e:  # noqa: BLE001 (any parse error is the file's)
            sys.exit(f"plot_losses.py: error: {path}: not YAML ({str(e).splitlines()[0]})")
    if not isinstance(config, dict):
        sys.exit(f"plot_losses.py: error: {path}: not a mapping of settings")
    return flatten(config)


def show(value):
    """A config value as a short string (1e-06 and 1e-6 alike)."""
    try:
        return f"{float(value):g}" if not isinstance(value, bool) else str(value).lower()
    except (TypeError, ValueError):
        return "~" if value is None else str(value)


def key_name(key):
    return SHORT.get(key, key)


def differing(configs):
    """The keys, in config order, whose values are not the same in every config of the list."""
    keys = []
    for c in configs:
        keys += [k for k in c if k not in keys]
    return [k for k in keys if not IGNORED.match(k) and
            len({show(c.get(k)) for c in configs}) > 1]


def inert(config, key):
    """Whether key has no effect on this run: λ outside DrMMD, the β schedule without noise, the
    plateau's settings under a constant step, the Sobolev ε outside Sobolev descent."""
    method = show(config.get("flow.method", "mmd"))
    if key == "flow.drmmd_lambda":
        return method != "drmmd"
    if key == "flow.sobolev_eps":
        return method != "sobolev"
    if key in ("noise.schedule", "noise.factor", "noise.every", "noise.tau"):
        return show(config.get("noise.beta0", 1)) == "0"
    if key in ("flow.patience", "flow.step_factor"):
        return show(config.get("flow.step_schedule", "constant")) != "plateau"
    return False


def describe(config, keys):
    return ", ".join(f"{key_name(k)}={show(config.get(k))}" for k in keys
                     if not inert(config, k))


class Curve:
    """One line: its epochs and values, an optional band, and what it is (setting and seed)."""

    def __init__(self, name, seed, config, epochs, values, band=None, seeds=0, origin=""):
        self.name, self.seed, self.config = name, seed, config
        self.epochs, self.values, self.band = epochs, values, band
        self.seeds, self.origin = seeds, origin
        self.extra = ""  # the keys that tell this curve from one whose label would read the same
        self.metric = ""

    def label(self, metric_shown):
        who = self.name + (f" [{self.extra}]" if self.extra else "")
        if self.seeds:
            who += f", {self.seeds} seeds"
        elif self.seed is not None:
            who += f", seed {self.seed}"
        return who + (f" ({self.metric})" if metric_shown else "")


def metrics(metric):
    return ["train", "valid"] if metric == "both" else [metric]


def run_curves(folder, metric, configs):
    rows = read_rows(os.path.join(folder, "losses.csv"))
    config = read_config(folder)
    base = os.path.basename(os.path.normpath(folder))
    parent = os.path.basename(os.path.dirname(os.path.abspath(folder)))
    sweep_run = re.fullmatch(r"seed(\d+)", base)
    seed = config.get("seed", int(sweep_run.group(1)) if sweep_run else None)
    # A run of a sweep is named by its setting, another by its folder.
    name = parent if sweep_run else base
    configs.append(config)
    out = []
    for m in metrics(metric):
        c = Curve(name, seed, config, [int(r["epoch"]) for r in rows],
                  [float(r[m + "_loss"]) for r in rows], origin=folder)
        c.metric = m
        out.append(c)
    return out


def sweep_config(folder, setting):
    """The config of a setting of a sweep: that of its first run folder that holds one."""
    path = os.path.join(folder, setting)
    seeds = sorted((int(s[4:]), s) for s in (os.listdir(path) if os.path.isdir(path) else [])
                   if re.fullmatch(r"seed\d+", s))
    for _, s in seeds:
        if os.path.exists(os.path.join(path, s, "config.yaml")):
            return read_config(os.path.join(path, s))
    return {}


def sweep_curves(folder, metric, only, configs):
    rows = read_rows(os.path.join(folder, "curves.csv"))
    settings = []
    for r in rows:
        if r["setting"] not in settings and (not only or r["setting"] in only):
            settings.append(r["setting"])
    out = []
    for s in settings:
        config = sweep_config(folder, s)
        configs.append(config)
        sel = [r for r in rows if r["setting"] == s]
        for m in metrics(metric):
            gmean = [float(r[m + "_gmean"]) for r in sel]
            gstd = [float(r[m + "_gstd"]) for r in sel]
            band = ([g / f for g, f in zip(gmean, gstd)], [g * f for g, f in zip(gmean, gstd)])
            c = Curve(s, None, config, [int(r["epoch"]) for r in sel], gmean, band,
                      seeds=int(sel[0]["runs"]), origin=folder)
            c.metric = m
            out.append(c)
    return out


def settle_labels(curves, metric_shown):
    """Every curve gets the keys in which its config differs from the others'; labels that still
    read the same get their folders."""
    keys = differing([c.config for c in curves])
    for c in curves:
        c.extra = describe(c.config, keys)
    groups = {}
    for c in curves:
        groups.setdefault(c.label(metric_shown), []).append(c)
    for same in groups.values():
        if len(same) > 1:
            for c in same:
                c.extra = ", ".join(x for x in (c.extra, c.origin) if x)


def loss_meaning(configs):
    """What the losses are, for the y label: ½MMD² to a teacher or target, or half the squared
    error to a data file's outputs (data.input: file); nothing when the runs differ in it."""
    kinds = {"1/2 squared error to the data's outputs" if c.get("data.input") == "file"
             else "1/2 MMD$^2$" for c in configs}
    return f"  ({kinds.pop()})" if len(kinds) == 1 else ""


def caption(configs):
    """The settings every curve shares, in words (those that differ are in the labels)."""
    common = {}
    for k in (configs[0] if configs else {}):
        if all(k in c and show(c[k]) == show(configs[0][k]) for c in configs):
            common[k] = configs[0][k]

    def has(*keys):
        return all(k in common for k in keys)

    def v(k):
        return show(common[k])

    parts = []
    samples = common.get("problem") == "samples"
    if samples:
        if has("target.law"):
            parts.append(f"target {v('target.law')}" +
                         (f" (M = {v('target.size')})" if has("target.size") and
                          common["target.law"] != "file" else ""))
        if has("kernel.name", "kernel.bandwidth"):
            parts.append(f"{v('kernel.name')} kernel σ = {v('kernel.bandwidth')}")
    else:
        if has("student.layout"):
            parts.append(f"{v('student.layout')} layout")
        parts += [f"{n} = {v(k)}" for n, k in (("d", "data.dim"), ("H", "model.hidden"),
                                                ("M", "teacher.particles")) if has(k)]
    if has("student.particles"):
        parts.append(f"N = {v('student.particles')}")
    if has("flow.method"):
        parts.append(f"flow {v('flow.method')}")
    if has("flow.step_size"):
        parts.append(f"γ = {v('flow.step_size')}")
    if has("noise.beta0"):
        parts.append(f"β₀ = {v('noise.beta0')}")
    if has("noise.schedule") and common["noise.schedule"] == "step" and \
            has("noise.factor", "noise.every") and not inert(common, "noise.every"):
        parts.append(f"β × {v('noise.factor')} every {v('noise.every')} epochs")
    if has("train.epochs"):
        parts.append(f"{v('train.epochs')} epochs")
    if has("train.batch") and not samples:
        parts.append(f"batch {v('train.batch')}")
    if has("dtype"):
        parts.append(v("dtype"))
    return ", ".join(parts)


def tick_label(value, _pos=None):
    """1, 0.02, 5e-4: as short as the value allows."""
    if value <= 0:
        return ""
    if 1e-2 <= value < 1e4:
        return f"{value:g}"
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def log_ticks(ax):
    """Labelled ticks at 1, 2, 5 x 10^k (1 x 10^k over many decades, every digit over less than
    one), so that a log axis always shows several labelled values."""
    lo, hi = ax.get_ylim()
    decades = math.log10(hi / lo) if lo > 0 and hi > lo else 1
    subs = (1.0,) if decades > 5 else (1.0, 2.0, 5.0) if decades > 1 else \
        (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)
    ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=subs, numticks=40))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(tick_label))
    ax.yaxis.set_minor_locator(ticker.LogLocator(base=10, subs=[s for s in range(1, 10)],
                                                 numticks=40))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_ylim(lo, hi)


def draw(ax, curves, metric_shown):
    """Each curve its own colour, dash pattern and markers; the first drawn widest and lowest, so
    that curves that coincide show each other's colours and dashes."""
    n = len(curves)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, c in enumerate(curves):
        width = 2.8 - 1.6 * i / max(n - 1, 1)
        stride = max(len(c.epochs) // 8, min(n, len(c.epochs)), 1)  # curve i: markers from i
        line, = ax.plot(c.epochs, c.values, label=c.label(metric_shown), color=colours[i % 10],
                        linewidth=width, zorder=2 + i, marker=MARKERS[i % len(MARKERS)],
                        markersize=4.5, markevery=(i * stride // n, stride))
        if DASHES[i % len(DASHES)][0] is not None:
            line.set_dashes(DASHES[i % len(DASHES)])
        if c.band:
            # Faint fill and outlined edges in the line's dashes: bands that overlap stay apart.
            ax.fill_between(c.epochs, *c.band, color=line.get_color(), alpha=0.1, linewidth=0,
                            zorder=1)
            for edge in c.band:
                e, = ax.plot(c.epochs, edge, color=line.get_color(), linewidth=0.7, alpha=0.6,
                             zorder=1.5)
                if DASHES[i % len(DASHES)][0] is not None:
                    e.set_dashes(DASHES[i % len(DASHES)])


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("folders", nargs="+", help="run folders (losses.csv) or sweep folders")
    p.add_argument("-o", "--out", required=True, help="PNG to write")
    p.add_argument("--metric", choices=["train", "valid", "both"], default="valid")
    p.add_argument("--settings", default="", help="sweep: comma-separated settings to show")
    p.add_argument("--title", default="", help="first line of the title (the shared settings "
                                               "follow it)")
    a = p.parse_args(argv)
    curves, configs = [], []
    only = [s for s in a.settings.split(",") if s]
    for folder in a.folders:
        if os.path.exists(os.path.join(folder, "curves.csv")):
            curves += sweep_curves(folder, a.metric, only, configs)
        elif os.path.exists(os.path.join(folder, "losses.csv")):
            curves += run_curves(folder, a.metric, configs)
        else:
            sys.exit(f"plot_losses.py: error: {folder} holds neither losses.csv nor curves.csv")
    if not curves:
        sys.exit(f"plot_losses.py: error: no setting of {a.folders} is among --settings "
                 f"{a.settings}")
    metric_shown = a.metric == "both"
    settle_labels(curves, metric_shown)
    fig, ax = plt.subplots(figsize=(10, 4.8), dpi=120)
    draw(ax, curves, metric_shown)
    ax.set_yscale("log")
    log_ticks(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel({"train": "train loss", "valid": "validation loss",
                   "both": "loss"}[a.metric] + loss_meaning(configs))
    note = caption(configs)
    if any(c.band for c in curves):
        note += ("; " if note else "") + "lines: geometric mean over seeds, bands: ×/÷ one " \
                                         "geometric std"
    ax.set_title("\n".join(x for x in (a.title, textwrap.fill(note, 110)) if x), fontsize=9)
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(a.out, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
