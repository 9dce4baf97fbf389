#!/usr/bin/python3
"""Plot the theory's statistics of mmdflow runs (theory.csv, docs/theory.md) to a PNG.

  plot_theory.py RUN [RUN ...] -o theory.png   run folders, or sweep folders (every run below
                                               them): four panels against the epoch or sum beta^2
      (a) 1/2 MMD^2 against the epoch
      (b) E||grad h(z)||^2 (solid) and E||grad h(z + beta w)||^2 (dashed) against the epoch
      (c) 1/2 MMD^2 against sum beta^2, beside the bound's form F_0 exp(-c sum beta^2) (dotted)
          through the run's first and last points: an exponential decay in sum beta^2 follows it
      (d) the descent ratio (thin) and its running minimum (thick): the largest 8 lambda^2 for
          which the decreasing-direction condition held so far, E||grad h(z + beta w)||^2 from
          the run's log.noise_draws draws of w (the title says how many)
      Each run its colour, line style and marker; the legend beside the panels
  plot_theory.py --gap SWEEP -o gap.png        a sweep of one exact setting and sampled settings
      of several train.batch B, seeds alike: the distance between the final particles of each
      sampled run and the exact run of its seed, against B, and the losses along the runs

  plot_theory.py --table SWEEP [SWEEP ...]     no figure: per setting (named SWEEP/setting, so
      that settings of one name in two sweeps stay apart), each seed's final 1/2 MMD^2 and
      E||grad h(z)||^2 / (1/2 MMD^2), the seeds that stalled (at a stationary point, that ratio
      below 1e-8, with 1/2 MMD^2 above 1e-6 of its initial value), the smallest descent ratio,
      the draws of w it is from, the mean rate ln(F_0 / F_end) / sum beta^2, and the bound's
      largest constant: C = min_t ln(F_0 / F_t) / sum_{s<=t} beta_s^2, the largest C with
      F_t <= F_0 exp(-C sum beta^2) at every epoch, the epoch that sets it, and how loose that
      bound is at the run's last fit, F_0 exp(-C sum beta^2) / F_end

1/2 MMD^2 at or below the floor of the run's dtype (float64 1e-15, float32 1e-8, as theory.csv's
empty descent_ratio) is round-off: an exact fit, printed 0, and no ratio or rate is read there.

Runs of one step an epoch make the epochs steps. Reads student.pt with tests/python/read_pt.py.
"""
import argparse
import csv
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def config_value(folder, section, key):
    """A key of a run's config.yaml (as mmdflow writes it: sections of indented keys)."""
    current = None
    with open(os.path.join(folder, "config.yaml")) as f:
        for line in f:
            if not line.startswith(" "):
                current = line.split(":")[0].strip()
            elif current == section and line.strip().startswith(key + ":"):
                return line.split(":", 1)[1].strip()
    return None


def exact_run(folder):
    return config_value(folder, "flow", "kernel") == "exact"


def top_value(folder, key):
    """A top-level key of a run's config.yaml."""
    with open(os.path.join(folder, "config.yaml")) as f:
        for line in f:
            if line.startswith(key + ":"):
                return line.split(":", 1)[1].strip()
    return None


def floor_of(run):
    """The 1/2 MMD^2 at or below which a run's value is round-off (src/train/records.h)."""
    return 1e-15 if top_value(run, "dtype") == "float64" else 1e-8


def draws_of(run):
    """The draws of w behind a run's noisy_grad_sq (log.noise_draws, 1 before the key existed)."""
    return int(config_value(run, "log", "noise_draws") or 1)


def draws_text(draws):
    if draws == {1}:
        return "a single draw of w"
    return " / ".join(str(k) for k in sorted(draws)) + " draws of w"


def runs_below(folder):
    """(label, run folder) of a run folder, or of every run of a sweep folder."""
    if os.path.exists(os.path.join(folder, "config.yaml")):
        parts = os.path.normpath(folder).split(os.sep)
        return [("/".join(parts[-2:]) if parts[-1].startswith("seed") else parts[-1], folder)]
    out = []
    sweep = os.path.basename(os.path.normpath(folder))
    for setting in sorted(os.listdir(folder)):
        path = os.path.join(folder, setting)
        if not os.path.isdir(path):
            continue
        for seed in sorted(os.listdir(path)):
            run = os.path.join(path, seed)
            if os.path.exists(os.path.join(run, "losses.csv")):
                out.append((f"{sweep}/{setting}/{seed}", run))
    return out


def column(rows, name):
    return [float(r[name]) if r[name] != "" else math.nan for r in rows]


# Line styles and markers that tell runs apart where their curves coincide (stall.png: two runs
# that end at the same fit); the bound's form is dotted.
STYLES = ["-", "--", "-.", (0, (5, 1, 1, 1, 1, 1))]
MARKERS = ["o", "s", "^", "v", "D", "x", "+", "*"]


def style_of(i, n_points, n_runs=1):
    """Run i of n_runs: its markers every n_points / 8 points, shifted by i / n_runs of that."""
    every = max(1, n_points // 8)
    return dict(color=f"C{i % 10}", ls=STYLES[i % len(STYLES)], marker=MARKERS[i % len(MARKERS)],
                markevery=(i * every // max(1, n_runs), every), markersize=5,
                markerfacecolor="none")


def plot_theory(runs, out, title):
    fig, axes = plt.subplots(2, 2, figsize=(13, 7.5), dpi=80)
    (ax_f, ax_g), (ax_b, ax_r) = axes
    draws = set()
    for i, (label, run) in enumerate(runs):
        rows = read_rows(os.path.join(run, "theory.csv"))
        if not rows:
            continue
        floor = floor_of(run)
        epoch = column(rows, "epoch")
        # At or below the floor 1/2 MMD^2 is round-off (an exact fit): not drawn on a log axis.
        half = [f if f > floor else math.nan for f in column(rows, "half_mmd2")]
        k = max(1, len(rows) // 1000)  # at most about 1000 points a line
        st = style_of(i, len(epoch[::k]), len(runs))
        ax_f.plot(epoch[::k], half[::k], label=label, lw=1.2, **st)
        ax_g.plot(epoch[::k], column(rows, "grad_sq")[::k], lw=1.4, **st)
        ax_g.plot(epoch[::k], column(rows, "noisy_grad_sq")[::k], lw=0.6, alpha=0.7,
                  color=st["color"], ls=st["ls"])
        sums = column(rows, "beta_sq_sum")
        ax_b.plot(sums[::k], half[::k], lw=1.2, **st)
        ratio = column(rows, "descent_ratio")
        # Where 1/2 MMD^2 is at round-off (an exact fit) the ratio means nothing.
        pairs = [(e, r) for e, r, f in zip(epoch, ratio, half) if not math.isnan(r) and f > floor]
        if pairs:
            draws.add(draws_of(run))
            low, mins = math.inf, []
            for _, r in pairs:
                low = min(low, r)
                mins.append(low)
            ax_r.plot([e for e, _ in pairs][::k], [r for _, r in pairs][::k], color=st["color"],
                      lw=0.5, alpha=0.6)
            ax_r.plot([e for e, _ in pairs][::k] + [pairs[-1][0]], mins[::k] + [mins[-1]], lw=1.6,
                      **style_of(i, len(pairs[::k]) + 1, len(runs)))
        # The bound's form F_0 exp(-c sum beta^2) through the run's start (F_0 before the first
        # step, summary.json) and its last fit above round-off: c the run's mean rate.
        last = max((k for k, f in enumerate(half) if f > floor), default=None)  # nan > x: False
        if last is not None and sums[last] > 0:
            f0 = initial_loss(run)
            rate = math.log(f0 / half[last]) / sums[last]
            grid = [sums[last] * k / 100 for k in range(101)]
            ax_b.plot(grid, [f0 * math.exp(-rate * x) for x in grid], color=st["color"], lw=0.8,
                      ls=":")
    ax_f.set(xlabel="epoch", ylabel="1/2 MMD$^2$", yscale="log", title="(a) loss")
    ax_g.set(xlabel="epoch", ylabel="E||grad h||$^2$", yscale="log",
             title="(b) at z (thick), at z + beta w (thin)")
    ax_b.set(xlabel="sum of beta$^2$ over the steps", ylabel="1/2 MMD$^2$", yscale="log",
             title="(c) against sum beta$^2$; dotted: the bound's form")
    ax_r.set(xlabel="epoch", ylabel="descent ratio", yscale="log",
             title="(d) descent ratio, running minimum (thick);\nE||grad h(z + beta w)||$^2$ from "
             + (draws_text(draws) if draws else "no noisy run"))
    for ax in axes.flat:
        ax.grid(True, which="both", alpha=0.3)
    fig.legend(*ax_f.get_legend_handles_labels(), loc="center right", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.83, 1))
    fig.savefig(out)


def particles(run):
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "python"))
    from check_theory import tensors  # noqa: E402
    t = tensors(os.path.join(run, "student.pt"))
    return [list(a) + list(b) for a, b in zip(t["A"].reshape(len(t["A"]), -1),
                                              t["B"].reshape(len(t["B"]), -1))]


def rms_distance(p, q):
    return math.sqrt(sum(sum((x - y) ** 2 for x, y in zip(a, b)) for a, b in zip(p, q)) / len(p))


def plot_gap(sweep, out, title):
    exact, sampled = {}, {}  # seed -> run; (B, seed) -> run
    for label, run in runs_below(sweep):
        seed = label.split("/")[-1]
        if exact_run(run):
            exact[seed] = run
        else:
            sampled[(int(config_value(run, "train", "batch")), seed)] = run
    if not exact or not sampled:
        sys.exit(f"plot_theory.py: error: {sweep} needs an exact setting and sampled ones")
    fig, (ax_d, ax_l) = plt.subplots(1, 2, figsize=(13, 4.2), dpi=80)
    sizes = sorted({b for b, _ in sampled})
    rms = []
    for b in sizes:
        d = [rms_distance(particles(run), particles(exact[s])) for (bb, s), run in sampled.items()
             if bb == b and s in exact]
        ax_d.scatter([b] * len(d), d, color="C0", s=10, alpha=0.6)
        rms.append(math.sqrt(sum(x * x for x in d) / len(d)))
    ax_d.plot(sizes, rms, "o-", color="C0", label="RMS over seeds")
    ax_d.plot(sizes, [rms[0] * math.sqrt(sizes[0] / b) for b in sizes], "k--", lw=0.8,
              label="slope -1/2")
    ax_d.set(xscale="log", yscale="log", xlabel="inputs per step B",
             ylabel="RMS distance of the final particles",
             title="sampled flow against the exact flow (same start)")
    ax_d.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    seed = sorted(exact)[0]
    for i, b in enumerate(sizes):
        if (b, seed) in sampled:
            rows = read_rows(os.path.join(sampled[(b, seed)], "losses.csv"))
            epoch = column(rows, "epoch")
            ax_l.plot(epoch, column(rows, "valid_loss"), lw=0.9, label=f"sampled, B = {b}",
                      **style_of(i + 1, len(epoch), len(sizes) + 1))
    # The exact flow on top, black dots on a dashed line: the largest B's curve lies on it.
    rows = read_rows(os.path.join(exact[seed], "theory.csv"))
    epoch = column(rows, "epoch")
    ax_l.plot(epoch, column(rows, "half_mmd2"), color="k", ls="--", lw=1.2, marker=".",
              markevery=max(1, len(epoch) // 20), zorder=10, label="exact flow")
    ax_l.set(yscale="log", xlabel="epoch", ylabel="1/2 MMD$^2$ (sampled: validation estimate)",
             title=f"losses along the runs ({seed})")
    ax_l.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    for ax in (ax_d, ax_l):
        ax.grid(True, which="both", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out)
    for b, r in zip(sizes, rms):
        print(f"B = {b:6d}: RMS distance {r:.4g}")


STALL_RATIO, STALL_LEFT = 1e-8, 1e-6


def initial_loss(run):
    with open(os.path.join(run, "summary.json")) as f:
        s = json.load(f)
    return s["initial_train_loss" if exact_run(run) else "initial_valid_loss"]


def run_numbers(run):
    """The run's final 1/2 MMD^2 (0 at round-off) and E||grad h||^2 / (1/2 MMD^2), whether it
    stalled, the smallest descent ratio (above round-off) and the mean rate
    ln(F_0 / F_end) / sum beta^2."""
    rows = read_rows(os.path.join(run, "theory.csv"))
    floor = floor_of(run)
    half, grad = float(rows[-1]["half_mmd2"]), float(rows[-1]["grad_sq"])
    half = half if half > floor else 0.0
    f0 = initial_loss(run)
    ratio = grad / half if half > 0 else math.inf
    stalled = ratio < STALL_RATIO and half > STALL_LEFT * f0
    fits = [r for r in rows if float(r["half_mmd2"]) > floor]
    low = min((float(r["descent_ratio"]) for r in fits if r["descent_ratio"] != ""),
              default=math.nan)
    sums = float(fits[-1]["beta_sq_sum"]) if fits else 0
    rate = math.log(f0 / float(fits[-1]["half_mmd2"])) / sums if sums > 0 else math.nan
    # The bound's largest constant, where it binds, and its looseness at the last fit.
    rates = [(math.log(f0 / float(r["half_mmd2"])) / float(r["beta_sq_sum"]), int(r["epoch"]))
             for r in fits if float(r["beta_sq_sum"]) > 0]
    c, at = min(rates) if rates else (math.nan, 0)
    loose = f0 * math.exp(-c * sums) / float(fits[-1]["half_mmd2"]) if rates else math.nan
    return half, ratio, stalled, low, rate, (c, at, loose)


def bound_text(c, at, loose):
    return "-" if math.isnan(c) else f"{c:.1e} ({at}), {loose:.2g}"


def table(folders):
    settings, draws = {}, {}
    for folder in folders:
        for label, run in runs_below(folder):
            if os.path.exists(os.path.join(run, "summary.json")):  # finished
                name = label.rsplit("/", 1)[0]
                settings.setdefault(name, []).append(run_numbers(run))
                draws.setdefault(name, set()).add(draws_of(run))
    print("| setting | final 1/2 MMD^2 | final E\\|grad h\\|^2 / (1/2 MMD^2) | stalled | "
          "min descent ratio | draws of w | mean rate in sum beta^2 | "
          "bound's C (epoch), bound / F_end |")
    print("|---|---|---|---|---|---|---|---|")

    def each(values, spec):
        return " ".join("-" if math.isnan(v) else format(v, spec) for v in values)

    for name, runs in settings.items():
        # 1/2 MMD^2 at round-off (a difference of sums of kernel values) is an exact fit: 0.
        print(f"| {name} | {' '.join(f'{h:.1e}' if h > 0 else '0' for h, *_ in runs)} | "
              f"{' '.join(f'{r:.0e}' if h > 0 else '-' for h, r, *_ in runs)} | "
              f"{sum(st for _, _, st, *_ in runs)}/{len(runs)} | "
              f"{each([r[3] for r in runs], '.1e')} | "
              f"{','.join(str(k) for k in sorted(draws[name]))} | "
              f"{each([r[4] for r in runs], '.1e')} | "
              f"{' '.join(bound_text(*r[5]) for r in runs)} |")


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("folders", nargs="+", help="run folders or sweep folders")
    p.add_argument("-o", "--out", help="PNG to write")
    p.add_argument("--gap", action="store_true", help="sampled against exact runs of one sweep")
    p.add_argument("--table", action="store_true", help="print the final values, no figure")
    p.add_argument("--title", default="")
    a = p.parse_args(argv)
    if a.table:
        return table(a.folders)
    if not a.out:
        p.error("-o/--out is required for a figure")
    if a.gap:
        if len(a.folders) != 1:
            sys.exit("plot_theory.py: error: --gap takes one sweep folder")
        plot_gap(a.folders[0], a.out, a.title)
    else:
        runs = [r for f in a.folders for r in runs_below(f)
                if os.path.exists(os.path.join(r[1], "theory.csv"))]
        if not runs:
            sys.exit("plot_theory.py: error: no theory.csv in " + ", ".join(a.folders))
        plot_theory(runs, a.out, a.title)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
