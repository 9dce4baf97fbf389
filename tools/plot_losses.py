#!/usr/bin/python3
"""Plot mmdflow loss curves on a log scale to a PNG.

  plot_losses.py RUN [RUN ...] -o losses.png        one or several run folders (losses.csv)
  plot_losses.py SWEEP -o figure.png                a sweep folder (curves.csv): per setting,
                                                    the geometric mean over seeds and a band of
                                                    x/÷ one geometric standard deviation (the
                                                    spread of log loss), which a log scale shows
                                                    whole
"""
import argparse
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def plot_run(ax, folder, metric, label):
    rows = read_rows(os.path.join(folder, "losses.csv"))
    epochs = [int(r["epoch"]) for r in rows]
    for m in (["train", "valid"] if metric == "both" else [metric]):
        ax.plot(epochs, [float(r[m + "_loss"]) for r in rows],
                label=f"{label} ({m})" if metric == "both" or label else m)


def plot_sweep(ax, folder, metric, only):
    rows = read_rows(os.path.join(folder, "curves.csv"))
    settings = []
    for r in rows:
        if r["setting"] not in settings:
            settings.append(r["setting"])
    for s in settings:
        if only and s not in only:
            continue
        for m in (["train", "valid"] if metric == "both" else [metric]):
            sel = [r for r in rows if r["setting"] == s]
            e = [int(r["epoch"]) for r in sel]
            gmean = [float(r[m + "_gmean"]) for r in sel]
            gstd = [float(r[m + "_gstd"]) for r in sel]
            label = s if metric != "both" else f"{s} ({m})"
            line, = ax.plot(e, gmean, label=f"{label}, {sel[0]['runs']} seeds")
            ax.fill_between(e, [g / f for g, f in zip(gmean, gstd)],
                            [g * f for g, f in zip(gmean, gstd)], color=line.get_color(),
                            alpha=0.2, linewidth=0)
    ax.plot([], [], " ", label="lines: geometric mean over seeds; bands: x/÷ geometric std")


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("folders", nargs="+", help="run folders (losses.csv) or one sweep folder")
    p.add_argument("-o", "--out", required=True, help="PNG to write")
    p.add_argument("--metric", choices=["train", "valid", "both"], default="valid")
    p.add_argument("--settings", default="", help="sweep: comma-separated settings to show")
    p.add_argument("--title", default="")
    a = p.parse_args(argv)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for folder in a.folders:
        if os.path.exists(os.path.join(folder, "curves.csv")):
            plot_sweep(ax, folder, a.metric, [s for s in a.settings.split(",") if s])
        elif os.path.exists(os.path.join(folder, "losses.csv")):
            plot_run(ax, folder, a.metric, os.path.basename(os.path.normpath(folder))
                     if len(a.folders) > 1 else "")
        else:
            sys.exit(f"plot_losses.py: error: {folder} holds neither losses.csv nor curves.csv")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel({"train": "train loss", "valid": "validation loss",
                   "both": "loss"}[a.metric] + "  (1/2 MMD$^2$)")
    if a.title:
        ax.set_title(a.title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
