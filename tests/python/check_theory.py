#!/usr/bin/python3
"""Checks an exact-kernel run folder independently of mmdflow: reads student.pt and teacher.pt
with read_pt.py's reader (no torch), computes 1/2 MMD^2 from the closed-form arc-cosine kernel
with numpy, and compares it with the last half_mmd2 of theory.csv. Prints both; exits non-zero
when they differ by more than --rtol (relative).

  k(z, z') = (v.v') |w| |w'| (sin t + (pi - t) cos t) / (2 pi),  t = angle(w, w'),
  divided by d for inputs uniform on the sphere (docs/theory.md)."""
import argparse
import csv
import os
import sys
import zipfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from read_pt import Unpickler  # noqa: E402


def tensors(path):
    with zipfile.ZipFile(path) as z:
        pkl = [n for n in z.namelist() if n.endswith("data.pkl")]
        prefix = pkl[0][: -len("data.pkl")]
        obj = Unpickler(z.open(pkl[0]), z, prefix).load()
    out = {}
    for name, ((dtype, values), offset, shape) in obj.items():
        n = int(np.prod(shape))
        out[name] = np.array(values[offset:offset + n], dtype=np.float64).reshape(shape)
    return out


def kernel(w1, v1, w2, v2, sphere):
    n1 = np.linalg.norm(w1, axis=1)[:, None]
    n2 = np.linalg.norm(w2, axis=1)[None, :]
    cos = np.clip(w1 @ w2.T / (n1 * n2), -1.0, 1.0)
    t = np.arccos(cos)
    k = (v1 @ v2.T) * n1 * n2 * (np.sin(t) + (np.pi - t) * cos) / (2 * np.pi)
    return k / w1.shape[1] if sphere else k


def input_law(config_path):
    section = None
    with open(config_path) as f:
        for line in f:
            if not line.startswith(" "):
                section = line.split(":")[0].strip()
            elif section == "data" and line.strip().startswith("input:"):
                return line.split(":", 1)[1].strip()
    sys.exit(f"{config_path}: no data.input")


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run", help="a run folder of flow.kernel exact")
    p.add_argument("--rtol", type=float, default=1e-9)
    a = p.parse_args(argv)
    s, t = tensors(os.path.join(a.run, "student.pt")), tensors(os.path.join(a.run, "teacher.pt"))
    sphere = input_law(os.path.join(a.run, "config.yaml")) == "sphere"
    ws, vs = s["A"][:, 0, :], s["B"][:, :, 0]  # A [N, 1, d], B [N, o, 1]
    wt, vt = t["A"][:, 0, :], t["B"][:, :, 0]
    half = 0.5 * (kernel(ws, vs, ws, vs, sphere).mean() - 2 * kernel(ws, vs, wt, vt, sphere).mean()
                  + kernel(wt, vt, wt, vt, sphere).mean())
    with open(os.path.join(a.run, "theory.csv"), newline="") as f:
        logged = float(list(csv.DictReader(f))[-1]["half_mmd2"])
    rel = abs(half - logged) / abs(logged)
    print(f"theory.csv {logged:.17g}, numpy {half:.17g}, relative difference {rel:.3g}")
    return 0 if rel <= a.rtol else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
