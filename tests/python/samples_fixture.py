"""Synthetic run folders of `problem: samples` for the tools' tests, written as mmdflow lays them
out (config.yaml, target.pt, particles.pt, snapshots.pt, losses.csv, summary.json), with the
particles moved by a plain loop of numpy, one particle at a time, kept apart from
check_samples.py's PyTorch code on purpose."""
import json
import os

import numpy as np
import torch


def rings(m, radii=(1.0, 2.0, 3.0), seed=0):
    """m points on three concentric circles with a little noise."""
    rng = np.random.default_rng(seed)
    r = np.array(radii)[rng.integers(0, len(radii), m)]
    a = rng.uniform(0, 2 * np.pi, m)
    return np.stack([r * np.cos(a), r * np.sin(a)], 1) + 0.05 * rng.standard_normal((m, 2))


def half_mmd2(Z, U, s):
    def mean_k(X, Y):
        return np.mean([np.exp(-((x - Y) ** 2).sum(1) / (2 * s * s)).mean() for x in X])
    return 0.5 * (mean_k(Z, Z) - 2 * mean_k(Z, U) + mean_k(U, U))


def step(Z, U, s, gamma):
    new = np.empty_like(Z)
    for n, z in enumerate(Z):
        g = np.zeros_like(z)
        for Y in (Z, U):
            k = np.exp(-((z - Y) ** 2).sum(1) / (2 * s * s))
            sign = 1.0 if Y is Z else -1.0
            g += sign * (-(z - Y) * k[:, None] / (s * s)).sum(0) / len(Y)
        new[n] = z - gamma * g
    return new


CONFIG = """# resolved configuration
problem: samples
seed: 0
dtype: {dtype}
target:
  law: rings
flow:
  method: {method}
  step_size: {gamma}
  step_schedule: constant
noise:
  schedule: step
  beta0: {beta0}
kernel:
  name: {kernel}
  bandwidth: {s}
train:
  epochs: {epochs}
log:
  snapshot_every: {every}
  theory: ~
"""


def make_run(folder, U, Z0, epochs=12, every=4, s=1.0, gamma=0.5, snapshots=True, dtype="float64",
             method="mmd", beta0=0, kernel="gaussian"):
    """Writes a run folder of `epochs` steps from Z0 toward U; returns the final particles."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.yaml"), "w") as f:
        f.write(CONFIG.format(dtype=dtype, method=method, gamma=gamma, beta0=beta0, kernel=kernel,
                              s=s, epochs=epochs, every=every if snapshots else 0))
    Z, steps, snaps, rows = Z0.copy(), [0], [Z0.copy()], []
    for t in range(1, epochs + 1):
        before = half_mmd2(Z, U, s)
        Z = step(Z, U, s, gamma)
        rows.append((t, before, half_mmd2(Z, U, s)))
        if t % every == 0 or t == epochs:
            steps.append(t)
            snaps.append(Z.copy())
    with open(os.path.join(folder, "losses.csv"), "w") as f:
        f.write("epoch,train_loss,valid_loss,beta,step_size,grad_sq,noisy_grad_sq,seconds\n")
        for t, a, b in rows:
            f.write(f"{t},{a:.9g},{b:.9g},0,{gamma:.9g},0,0,0.001\n")
    with open(os.path.join(folder, "summary.json"), "w") as f:
        json.dump({"status": "done", "epochs": epochs, "final_valid_loss": rows[-1][2]}, f,
                  indent=2)
    torch.save({"U": torch.tensor(U)}, os.path.join(folder, "target.pt"))
    torch.save({"Z": torch.tensor(Z)}, os.path.join(folder, "particles.pt"))
    if snapshots:
        torch.save({"step": torch.tensor(steps, dtype=torch.int64),
                    "Z": torch.tensor(np.stack(snaps))}, os.path.join(folder, "snapshots.pt"))
    return Z
