#!/usr/bin/python3
"""Draw the particles of `problem: samples` runs over their target, a panel per step.

  plot_particles.py RUN [RUN ...] -o out.png [--steps 0,10,100]    a row of panels per run
  plot_particles.py RUN --gif out.gif [--fps 10]                   an animation of every snapshot
  plot_particles.py RUN -o out.png --images 8x8 [--count 36]       particles as 8x8 images
                                                                   (--digits: the same)

The steps come from snapshots.pt (step 0 is the initial particles) and particles.pt (the last
epoch); by default 4 spread over them, or the first and last without snapshots.pt. Each panel's
title gives 1/2 MMD^2 from losses.csv. In 2-D the points are drawn as they are; otherwise their
projection on the first two principal components of the target. The target is light grey, the
particles red, the axes equal and shared by a run's panels; the run's setting is its title.
With --images HxW the first --count particles (and target points) are drawn as grey images.
A missing or malformed file is one line naming it, exit status 2.
"""
import argparse
import os
import sys

import numpy as np

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from samples_run import BadRun, Run, setting  # noqa: E402

TARGET, PARTICLES = "0.78", "#d62728"


class View:
    """A run's frames as drawn: 2-D points (the PCA of the target beyond 2-D) or images."""

    def __init__(self, run, images=None, count=36):
        self.run, self.images, self.count = run, images, count
        self.frames = {k: v.double().numpy() for k, v in run.frames().items()}
        U = run.U.double().numpy()
        if images:
            h, w = images
            if h * w != run.d:
                raise BadRun(f"{run.path('target.pt')}: points of dimension {run.d}, not "
                             f"{h}x{w} images")
            self.lo, self.hi = float(U.min()), float(U.max())
            self.U = U
            return
        if run.d == 2:
            self.project = lambda X: X
            self.labels = ("$x_1$", "$x_2$")
        elif run.d == 1:
            self.project = lambda X: np.concatenate([X, np.zeros_like(X)], 1)
            self.labels = ("$x_1$", "")
        else:
            mean = U.mean(0)
            basis = np.linalg.svd(U - mean, full_matrices=False)[2][:2].T  # [d, 2]
            self.project = lambda X: (X - mean) @ basis
            self.labels = ("PC 1 of the target", "PC 2 of the target")
        self.U = self.project(U)

    def limits(self, steps):
        pts = np.concatenate([self.U] + [self.project(self.frames[k]) for k in steps])
        pts = pts[np.isfinite(pts).all(1)]
        lo, hi = pts.min(0), pts.max(0)
        pad = 0.05 * max(float((hi - lo).max()), 1e-12)
        return (lo[0] - pad, hi[0] + pad), (lo[1] - pad, hi[1] + pad)

    def title(self, step):
        loss = self.run.loss_at(step)
        return f"step {step}" + ("" if loss is None else f", 1/2 MMD$^2$ = {loss:.3g}")

    def mosaic(self, X):
        """The first `count` rows of X as h x w images in a near-square grid, NaN between them."""
        h, w = self.images
        X = X[: self.count]
        cols = int(np.ceil(np.sqrt(len(X))))
        rows = int(np.ceil(len(X) / cols))
        out = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), np.nan)
        for i, x in enumerate(X):
            r, c = divmod(i, cols)
            out[r * (h + 1): r * (h + 1) + h, c * (w + 1): c * (w + 1) + w] = x.reshape(h, w)
        return out

    def draw(self, ax, step, limits=None, title=None):
        ax.clear()
        if step is None:  # the target itself (images only)
            X, title = self.U, title or f"target (first {min(self.count, len(self.U))})"
        else:
            X, title = self.frames[step], title or self.title(step)
        ax.set_title(title, fontsize=9)
        if self.images:
            cmap = matplotlib.colormaps["gray_r"].copy()
            cmap.set_bad("white")
            ax.imshow(self.mosaic(X), cmap=cmap, vmin=self.lo, vmax=self.hi,
                      interpolation="nearest")
            ax.set_axis_off()
            return
        P = self.project(X)
        size = float(np.clip(3000 / len(P), 1, 16))
        ax.scatter(self.U[:, 0], self.U[:, 1], s=size, c=TARGET, linewidths=0, label="target")
        ax.scatter(P[:, 0], P[:, 1], s=size, c=PARTICLES, linewidths=0, label="particles")
        ax.set_xlim(*limits[0])
        ax.set_ylim(*limits[1])
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel(self.labels[0], fontsize=8)
        ax.set_ylabel(self.labels[1], fontsize=8)
        ax.tick_params(labelsize=7)


def describe(run, width):
    """The run's setting, broken between its items into lines of about `width` characters."""
    c = run.config
    items = [f"{run.name}: {setting(c, 'flow.method')} flow",
             f"{setting(c, 'kernel.name')} kernel (bandwidth {setting(c, 'kernel.bandwidth')})",
             f"$\\gamma$ = {setting(c, 'flow.step_size')}", f"N = {run.Z.shape[0]}",
             f"M = {run.U.shape[0]}", f"d = {run.d}", f"$\\beta_0$ = {setting(c, 'noise.beta0')}"]
    lines = [items[0]]
    for item in items[1:]:
        if len(lines[-1]) + len(item) + 2 > width:
            lines[-1] += ","
            lines.append(item)
        else:
            lines[-1] += ", " + item
    return "\n".join(lines)


def pick_steps(run, requested):
    frames = sorted(run.frames())
    if requested is None:
        idx = np.unique(np.round(np.linspace(0, len(frames) - 1, min(4, len(frames)))).astype(int))
        return [frames[i] for i in idx]
    missing = [k for k in requested if k not in frames]
    if missing:
        shown = ", ".join(map(str, frames[:10])) + (", ..." if len(frames) > 10 else "")
        raise BadRun(f"{run.path('snapshots.pt')}: no step {missing[0]} (it has {shown}"
                     f"{'' if run.steps else '; no snapshots.pt, only particles.pt'})")
    return requested


def figure(views, steps_of, with_target):
    cols = max(len(s) for s in steps_of) + with_target
    width = max(3.2 * cols, 4.5)
    fig = plt.figure(figsize=(width, 3.5 * len(views)), dpi=110, layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(len(views), 1))
    rows = []
    for sub, view in zip(subfigs, views):
        sub.suptitle(describe(view.run, int(14 * width)), fontsize=10)
        rows.append(np.atleast_1d(sub.subplots(1, cols)))
    return fig, rows


def plot(views, steps_of, out):
    with_target = bool(views[0].images)
    fig, rows = figure(views, steps_of, with_target)
    for view, steps, axes in zip(views, steps_of, rows):
        limits = None if view.images else view.limits(steps)
        if with_target:
            view.draw(axes[0], None)
        for ax, k in zip(axes[with_target:], steps):
            view.draw(ax, k, limits)
        for ax in axes[with_target + len(steps):]:
            ax.set_axis_off()
        if not view.images:
            axes[0].legend(loc="best", fontsize=7, markerscale=2)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {out}")


def animate(views, out, fps):
    from matplotlib import animation
    if not animation.writers.is_available("pillow"):
        print("plot_particles.py: error: --gif needs Pillow (apt-get install python3-pil)",
              file=sys.stderr)
        sys.exit(2)
    steps = sorted(set().union(*(v.frames for v in views)))
    with_target = bool(views[0].images)
    fig, rows = figure(views, [[0]] * len(views), with_target)
    limits = [None if v.images else v.limits(list(v.frames)) for v in views]
    for view, axes in zip(views, rows):
        if with_target:
            view.draw(axes[0], None)

    def frame(i):
        for view, axes, lim in zip(views, rows, limits):
            own = max([k for k in view.frames if k <= steps[i]], default=min(view.frames))
            view.draw(axes[-1], own, lim)
        return []

    anim = animation.FuncAnimation(fig, frame, frames=len(steps), blit=False)
    anim.save(out, writer=animation.PillowWriter(fps=fps))
    plt.close(fig)
    print(f"wrote {out} ({len(steps)} frames)")


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders of problem: samples")
    p.add_argument("-o", "--out", help="PNG to write")
    p.add_argument("--steps", help="comma-separated steps to draw (default: 4 spread out)")
    p.add_argument("--gif", help="GIF to write: every snapshot, in order")
    p.add_argument("--fps", type=float, default=8, help="GIF frames per second (default 8)")
    p.add_argument("--images", help="HxW: draw the particles as images of H by W pixels")
    p.add_argument("--digits", action="store_true", help="the same as --images 8x8")
    p.add_argument("--count", type=int, default=36, help="--images: how many (default 36)")
    a = p.parse_args(argv)
    if not a.out and not a.gif:
        p.error("give -o out.png, --gif out.gif or both")
    images = "8x8" if a.digits else a.images
    try:
        if images:
            h, _, w = images.partition("x")
            images = (int(h), int(w))
            if min(images) < 1:
                raise ValueError
        requested = None if a.steps is None else [int(k) for k in a.steps.split(",") if k]
        if a.count < 1 or a.fps <= 0:
            raise ValueError
    except ValueError:
        p.error("--images is HxW (as 8x8), --steps whole numbers, --count and --fps positive")
    try:
        views = [View(Run(r), images, a.count) for r in a.runs]
        steps_of = [pick_steps(v.run, requested) for v in views]
    except BadRun as e:
        print(f"plot_particles.py: error: {e}", file=sys.stderr)
        return 2
    if a.out:
        plot(views, steps_of, a.out)
    if a.gif:
        animate(views, a.gif, a.fps)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
