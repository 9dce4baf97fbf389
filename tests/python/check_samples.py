#!/usr/bin/python3
"""Replays a `problem: samples` run of mmdflow independently, in plain PyTorch and float64, and
checks its files.

  check_samples.py RUN [--steps S]

The plain MMD flow with a gaussian kernel k(x, y) = exp(-|x - y|^2 / (2 s^2)), written from the
equations, nothing shared with mmdflow's C++:
  h(z) = mean_n k(z, z_n) - mean_m k(z, u_m),   grad_1 k(x, y) = -(x - y) / s^2 k(x, y),
  z_n <- z_n - gamma grad h(z_n)                (all particles at once, gamma constant),
  F = 1/2 MMD^2 = 1/2 [mean k(z, z') - 2 mean k(z, u) + mean k(u, u')]  (diagonals included).
From snapshots.pt's step 0 and target.pt it takes S steps (default train.epochs) and compares:
- the particles with particles.pt (S = the run's last epoch) or with snapshots.pt's step S, and
  with every snapshot up to step S: max |difference| <= 1e-10;
- F with summary.json's final_valid_loss (every digit; S = the last epoch only):
  |difference| <= 1e-12 (|F| + 1/2 mean k(z, z') + 1/2 mean k(u, u')), i.e. 1e-12 relative to the
  terms F is the difference of, which is what float64 sums of N^2 and NM kernel values can
  promise once F is much smaller than them;
- F with losses.csv's valid_loss of epoch S (train_loss of epoch 1 for S = 0) to 1e-8 relative:
  losses.csv has 9 significant digits.
Prints one summary line. Exit status: 0 all agree, 1 a mismatch, 2 bad input or a configuration
it does not cover (other than gaussian, beta0 = 0, flow.method mmd, float64, constant steps).
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from samples_run import BadRun, Run, number, setting  # noqa: E402

Z_TOL, F_TOL, CSV_RTOL = 1e-10, 1e-12, 1e-8
CHUNK = 1 << 22  # differences x_i - y_j (their coordinates) computed at once


def kernel_terms(X, Y, s):
    """sum_j k(x_i, y_j) and sum_j k(x_i, y_j) (x_i - y_j), for each row x_i of X: [n], [n, d]."""
    ksum, kdiff = [], []
    step = max(1, CHUNK // max(1, Y.shape[0] * Y.shape[1]))
    for b in range(0, X.shape[0], step):
        diff = X[b:b + step, None, :] - Y[None, :, :]              # [b, m, d]
        k = torch.exp(-(diff * diff).sum(-1) / (2 * s * s))        # [b, m]
        ksum.append(k.sum(1))
        kdiff.append((k[:, :, None] * diff).sum(1))
    return torch.cat(ksum), torch.cat(kdiff)


def grad_witness(Z, U, s):
    """grad h(z_n) = mean_n' grad_1 k(z_n, z_n') - mean_m grad_1 k(z_n, u_m)."""
    _, zz = kernel_terms(Z, Z, s)
    _, zu = kernel_terms(Z, U, s)
    return -(zz / Z.shape[0] - zu / U.shape[0]) / (s * s)


def half_mmd2(Z, U, s):
    """F and the scale of its terms, 1/2 (mean k(z, z') + mean k(u, u'))."""
    kzz = kernel_terms(Z, Z, s)[0].sum() / Z.shape[0] ** 2
    kzu = kernel_terms(Z, U, s)[0].sum() / (Z.shape[0] * U.shape[0])
    kuu = kernel_terms(U, U, s)[0].sum() / U.shape[0] ** 2
    return (0.5 * (kzz - 2 * kzu + kuu)).item(), (0.5 * (kzz + kuu)).item()


def refuse(config):
    """Why this checker does not cover the run's configuration, or None."""
    checks = [("kernel.name", "gaussian"), ("flow.method", "mmd"), ("dtype", "float64"),
              ("flow.step_schedule", "constant")]
    for key, want in checks:
        got = setting(config, key, "constant" if key == "flow.step_schedule" else None)
        if got != want:
            return f"{key} is {got!r}; only {want} is covered"
    if number(config, "noise.beta0", 0.0) != 0:
        return f"noise.beta0 is {setting(config, 'noise.beta0')}; only 0 (no noise) is covered"
    if not number(config, "kernel.bandwidth", 0.0) > 0:
        return f"kernel.bandwidth is {setting(config, 'kernel.bandwidth')!r}, not positive"
    if number(config, "flow.step_size") is None:
        return "flow.step_size is not set"
    return None


def check(run, steps):
    """(ok, the summary line)."""
    why = refuse(run.config)
    if why:
        raise BadRun(f"{run.path('config.yaml')}: {why}")
    if run.steps is None:
        raise BadRun(f"{run.path('snapshots.pt')}: no such file (the initial particles are "
                     "its step 0; set log.snapshot_every)")
    for name, t in (("snapshots.pt", run.snapshots), ("target.pt", run.U),
                    ("particles.pt", run.Z)):
        if t.dtype != torch.float64:
            raise BadRun(f"{run.path(name)}: {t.dtype}, but the config says float64")
    epochs = int(number(run.config, "train.epochs", 0))
    if run.final_step != epochs:
        raise BadRun(f"{run.path('losses.csv')}: ends at epoch {run.final_step} of "
                     f"train.epochs {epochs} (an unfinished run)")
    steps = epochs if steps is None else steps
    if steps == epochs:
        reference, ref_name = run.Z, "particles.pt"
    elif steps in run.steps:
        reference, ref_name = run.snapshots[run.steps.index(steps)], f"snapshots.pt step {steps}"
    else:
        raise BadRun(f"{run.path('snapshots.pt')}: no step {steps} to compare with (it has "
                     f"{run.steps[:8]}{'...' if len(run.steps) > 8 else ''}; the run has "
                     f"{epochs} steps)")
    s, gamma = number(run.config, "kernel.bandwidth"), number(run.config, "flow.step_size")
    U = run.U.to(torch.float64)
    Z = run.snapshots[0].to(torch.float64).clone()
    worst_snap, worst_at = 0.0, None
    for t in range(1, steps + 1):
        Z = Z - gamma * grad_witness(Z, U, s)
        if t in run.steps:
            diff = (Z - run.snapshots[run.steps.index(t)]).abs().max().item()
            if diff > worst_snap:
                worst_snap, worst_at = diff, t
    dz = (Z - reference).abs().max().item()
    F, scale = half_mmd2(Z, U, s)
    ok = dz <= Z_TOL and worst_snap <= Z_TOL
    parts = [f"{steps} steps of N={Z.shape[0]} M={U.shape[0]} d={U.shape[1]}: "
             f"max |Z - {ref_name}| = {dz:.3g}"]
    if worst_at is not None:
        parts.append(f"max over the snapshots {worst_snap:.3g} (step {worst_at})")
    parts.append(f"1/2 MMD^2 = {F:.17g}")
    exact = (run.summary or {}).get("final_valid_loss") if steps == epochs else None
    if exact is not None:
        rel = abs(F - exact) / (abs(F) + scale)
        ok &= rel <= F_TOL
        parts.append(f"summary.json {exact:.17g} (rel. to its terms {rel:.3g})")
    logged = run.loss_at(steps)
    if logged is not None:
        rel = abs(F - logged) / max(abs(logged), 1e-300)
        ok &= rel <= CSV_RTOL
        parts.append(f"losses.csv {logged:.9g} (rel. {rel:.3g})")
    if exact is None and logged is None:
        parts.append("nothing logged to compare it with")
    return ok, "; ".join(parts)


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run", help="a run folder of problem: samples")
    p.add_argument("--steps", type=int, help="steps to replay (default: train.epochs)")
    a = p.parse_args(argv)
    if a.steps is not None and a.steps < 0:
        p.error("--steps must be >= 0")
    torch.set_num_threads(min(4, torch.get_num_threads()))
    try:
        ok, line = check(Run(a.run), a.steps)
    except BadRun as e:
        print(f"check_samples: error: {e}", file=sys.stderr)
        return 2
    print(f"check_samples: {'OK' if ok else 'MISMATCH'}: {line}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
