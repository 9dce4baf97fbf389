#!/usr/bin/python3
"""tools/plot_theory.py on synthetic run folders of flow.kernel exact: --table keeps settings of
one name in two sweeps apart (each named by its sweep folder), reads 1/2 MMD^2 at or below the
dtype's floor as an exact fit (0), lists the draws of w behind the descent ratio, and a figure is
drawn from runs whose curves coincide. Exits 77 (skipped) without matplotlib."""
import contextlib
import io
import os
import shutil
import sys
import tempfile
import types
import unittest

try:
    import matplotlib  # noqa: F401
except ImportError:
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
import plot_theory  # noqa: E402

HEADER = ("epoch,half_mmd2,grad_sq,noisy_grad_sq,beta,step_size,beta_sq_sum,descent_ratio,"
          "noisy_grad_sq_se,next_beta\n")


def make_run(folder, halves, dtype="float64", draws=None, beta=0.5):
    """A run folder as mmdflow writes it, as far as plot_theory.py reads it: halves the
    per-epoch 1/2 MMD^2, E||grad h||^2 = halves / 10, the noisy one twice that."""
    os.makedirs(folder)
    log = "log:\n  print_every: 0\n" + (f"  noise_draws: {draws}\n" if draws else "")
    with open(os.path.join(folder, "config.yaml"), "w") as f:
        f.write(f"seed: 0\ndtype: {dtype}\nflow:\n  method: mmd\n  kernel: exact\n{log}")
    with open(os.path.join(folder, "summary.json"), "w") as f:
        f.write('{"initial_train_loss": 1.0}')
    with open(os.path.join(folder, "losses.csv"), "w") as f:
        f.write("epoch,train_loss\n" + "".join(f"{e + 1},{h}\n" for e, h in enumerate(halves)))
    with open(os.path.join(folder, "theory.csv"), "w") as f:
        f.write(HEADER)
        for e, h in enumerate(halves):
            ratio = "" if h <= 1e-15 else repr(2 * h / 10 / (beta * beta * h))
            f.write(f"{e + 1},{h!r},{h / 10!r},{2 * h / 10!r},{beta},1,{beta * beta * (e + 1)},"
                    f"{ratio},,{beta}\n")


def call(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = plot_theory.main(list(argv))
        except SystemExit as e:
            rc = e.code
    return types.SimpleNamespace(returncode=rc, stdout=out.getvalue(), stderr=err.getvalue())


class PlotTheory(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="plot_theory_")
        # Two sweeps, each with a setting "plain": different runs, different numbers.
        cls.a = os.path.join(cls.dir, "stall")
        cls.b = os.path.join(cls.dir, "stall_search")
        make_run(os.path.join(cls.a, "plain", "seed0"), [0.5, 0.25, 0.125])
        make_run(os.path.join(cls.b, "plain", "seed0"), [0.5, 0.1, 0.01], draws=100)
        make_run(os.path.join(cls.b, "plain", "seed1"), [0.5, 0.1, 0.02], draws=100)
        # At 5e-9: round-off in float32, a value in float64.
        make_run(os.path.join(cls.b, "f32", "seed0"), [0.5, 1e-3, 5e-9], dtype="float32")
        make_run(os.path.join(cls.b, "f64", "seed0"), [0.5, 1e-3, 5e-9])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir)

    def rows(self, out):
        return {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in out.splitlines()
                if line.startswith("| ") and not line.startswith("| setting")}

    def test_table_keeps_sweeps_apart(self):
        r = call("--table", self.a, self.b)
        self.assertEqual(r.returncode, None, r.stderr)
        rows = self.rows(r.stdout)
        self.assertNotIn("plain", rows)
        self.assertEqual(rows["stall/plain"][0], "1.2e-01")
        self.assertEqual(rows["stall_search/plain"][0], "1.0e-02 2.0e-02")
        self.assertEqual(rows["stall/plain"][4], "1")
        self.assertEqual(rows["stall_search/plain"][4], "100")

    def test_floor_is_the_dtypes(self):
        rows = self.rows(call("--table", self.b).stdout)
        self.assertEqual(rows["stall_search/f32"][0], "0")
        self.assertEqual(rows["stall_search/f32"][1], "-")
        self.assertEqual(rows["stall_search/f64"][0], "5.0e-09")

    def test_figure_of_coinciding_runs(self):
        png = os.path.join(self.dir, "t.png")
        r = call(os.path.join(self.a, "plain", "seed0"), os.path.join(self.b, "plain", "seed0"),
                 "-o", png)
        self.assertEqual(r.returncode, None, r.stderr)
        with open(png, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        self.assertEqual(plot_theory.draws_text({1}), "a single draw of w")
        self.assertEqual(plot_theory.draws_text({100}), "100 draws of w")


if __name__ == "__main__":
    unittest.main()
