#!/usr/bin/python3
"""Write scikit-learn's digits data set as a target of `problem: samples`.

  digits.py OUT.npy            a [1797, 64] float64 array (.npy), for target.law: file,
                               target.file: OUT.npy
  digits.py OUT.csv --csv      the same as comma-separated text, a line per image

sklearn.datasets.load_digits: 1797 grey images of 8x8 pixels, values 0..16, shipped inside the
package (Debian's python3-sklearn; nothing is downloaded), divided by 16 into [0, 1]; pixel
(r, c) of an image is its column 8 r + c (tools/plot_particles.py --digits draws them back).
"""
import argparse
import sys

import numpy as np


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("out", help="the file to write")
    p.add_argument("--csv", action="store_true", help="comma-separated text instead of .npy")
    a = p.parse_args(argv)
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        print("digits.py: error: scikit-learn is missing (apt-get install python3-sklearn)",
              file=sys.stderr)
        return 2
    X = np.ascontiguousarray(load_digits().data, dtype=np.float64) / 16.0
    try:
        if a.csv:
            np.savetxt(a.out, X, fmt="%.17g", delimiter=",")
        else:
            with open(a.out, "wb") as f:  # np.save would append .npy to another name
                np.save(f, X)
    except OSError as e:
        print(f"digits.py: error: {a.out}: {e.strerror}", file=sys.stderr)
        return 2
    print(f"wrote {a.out}: {X.shape[0]} x {X.shape[1]} float64 in [{X.min():g}, {X.max():g}] "
          f"({'CSV' if a.csv else 'npy'}), scikit-learn's digits / 16")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
