#!/usr/bin/python3
"""Write scikit-learn's diabetes data set as a training and a validation file of `data.input: file`.

  diabetes.py OUTDIR      OUTDIR/diabetes_train.csv (354 rows) and OUTDIR/diabetes_valid.csv
                          (88 rows), for data.train_file and data.valid_file

sklearn.datasets.load_diabetes: 442 patients, 10 inputs (age, sex, bmi, bp, s1..s6) and a
measure of disease progression a year later, shipped inside the package (Debian's
python3-sklearn; nothing is downloaded). Each input column and the output are standardized to
mean 0 and variance 1 over all 442 rows, so the zero predictor's loss 1/2 mean y^2 is about 0.5.
The rows are split 80/20 by a fixed permutation (numpy's default_rng(0)), the same on every
machine. Each file has a header: the inputs by name, the output `y`.
"""
import argparse
import os
import sys

import numpy as np


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("outdir", help="the folder to write the two files into (created if missing)")
    a = p.parse_args(argv)
    try:
        from sklearn.datasets import load_diabetes
    except ImportError:
        print("diabetes.py: error: scikit-learn is missing (apt-get install python3-sklearn)",
              file=sys.stderr)
        return 2
    d = load_diabetes()
    X = np.asarray(d.data, dtype=np.float64)
    y = np.asarray(d.target, dtype=np.float64)
    X = (X - X.mean(0)) / X.std(0)
    y = (y - y.mean()) / y.std()
    order = np.random.default_rng(0).permutation(len(y))
    cut = int(round(0.8 * len(y)))
    header = ",".join(list(d.feature_names) + ["y"])
    try:
        os.makedirs(a.outdir, exist_ok=True)
        for name, rows in (("train", order[:cut]), ("valid", order[cut:])):
            path = os.path.join(a.outdir, f"diabetes_{name}.csv")
            np.savetxt(path, np.column_stack([X[rows], y[rows]]), fmt="%.17g", delimiter=",",
                       header=header, comments="")
            print(f"wrote {path}: {len(rows)} rows, {X.shape[1]} inputs and y")
    except OSError as e:
        print(f"diabetes.py: error: {a.outdir}: {e.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
