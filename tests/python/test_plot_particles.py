#!/usr/bin/python3
"""tools/plot_particles.py and tools/digits.py on synthetic run folders of `problem: samples`
(samples_fixture.py): PNGs and GIFs of 2-D, 5-D (the target's principal components) and 8x8-image
runs, with and without snapshots.pt; a bad folder, file or step is one line naming it, exit 2.
Exits 77 (skipped) without PyTorch or matplotlib."""
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import types
import unittest

try:
    import matplotlib  # noqa: F401
    import numpy as np
    import torch
except ImportError:
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.join(HERE, "..", "..", "tools")
sys.path.insert(0, HERE)
sys.path.insert(0, TOOLS)
import plot_particles  # noqa: E402
import samples_fixture  # noqa: E402
import samples_run  # noqa: E402


def call(main, *argv):
    """A tool's main run in this process: its exit status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(argv))
        except SystemExit as e:
            rc = e.code
    return types.SimpleNamespace(returncode=rc, stdout=out.getvalue(), stderr=err.getvalue())


def is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


class PlotParticles(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="plot_particles_")
        rng = np.random.default_rng(0)
        U = samples_fixture.rings(120)
        Z0 = rng.normal(0, 0.3, (30, 2)) + [2, 0]
        cls.rings = os.path.join(cls.dir, "rings")
        samples_fixture.make_run(cls.rings, U, Z0, epochs=12, every=2, s=0.6, gamma=2)
        cls.final_only = os.path.join(cls.dir, "final_only")
        samples_fixture.make_run(cls.final_only, U, Z0, epochs=3, snapshots=False)
        # 5-D: the rings in a plane of R^5 turned at random
        cls.basis = np.linalg.qr(rng.standard_normal((5, 5)))[0][:, :2]
        cls.flat = U
        cls.d5 = os.path.join(cls.dir, "d5")
        samples_fixture.make_run(cls.d5, U @ cls.basis.T, rng.normal(0, 0.3, (20, 5)), epochs=4)
        cls.d64 = os.path.join(cls.dir, "d64")
        samples_fixture.make_run(cls.d64, rng.uniform(0, 1, (50, 64)), rng.uniform(0, 1, (9, 64)),
                                 epochs=4, every=2, s=2, gamma=5)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir)

    def out(self, name):
        return os.path.join(self.dir, name)

    def test_a_2d_run_draws_end_to_end(self):
        r = subprocess.run([sys.executable, os.path.join(TOOLS, "plot_particles.py"), self.rings,
                            "-o", self.out("rings.png")], capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(is_png(self.out("rings.png")))

    def test_default_steps_spread_over_the_snapshots(self):
        self.assertEqual(plot_particles.pick_steps(samples_run.Run(self.rings), None),
                         [0, 4, 8, 12])
        self.assertEqual(plot_particles.pick_steps(samples_run.Run(self.final_only), None), [3])

    def test_titles_take_losses_csv(self):
        run = samples_run.Run(self.rings)
        self.assertEqual(run.loss_at(0), run.rows[0]["train_loss"])
        self.assertEqual(run.loss_at(12), run.rows[-1]["valid_loss"])
        view = plot_particles.View(run)
        self.assertEqual(view.title(4), f"step 4, 1/2 MMD$^2$ = {run.rows[3]['valid_loss']:.3g}")

    def test_several_runs_steps_and_pca(self):
        r = call(plot_particles.main, self.rings, self.final_only, self.d5, "-o",
                 self.out("multi.png"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(is_png(self.out("multi.png")))
        r = call(plot_particles.main, self.rings, "--steps", "0,6,12", "-o", self.out("s.png"))
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_beyond_2d_the_targets_principal_plane_is_drawn(self):
        view = plot_particles.View(samples_run.Run(self.d5))
        flat = self.flat - self.flat.mean(0)
        # a target in a plane keeps its shape: the same distances between points
        dist = lambda X: np.linalg.norm(X[:, None] - X[None], axis=-1)  # noqa: E731
        self.assertLess(np.abs(dist(view.U) - dist(flat)).max(), 1e-9)

    def test_a_gif_has_a_frame_per_snapshot(self):
        from PIL import Image
        r = call(plot_particles.main, self.rings, self.d5, "--gif", self.out("a.gif"), "--fps", "4")
        self.assertEqual(r.returncode, 0, r.stderr)
        with Image.open(self.out("a.gif")) as im:
            self.assertEqual(im.n_frames, 7)  # steps 0, 2, ..., 12 (d5 has 0 and 4)

    def test_images(self):
        for argv in (["--digits"], ["--images", "8x8", "--count", "4", "--steps", "2"]):
            r = call(plot_particles.main, self.d64, "-o", self.out("im.png"), *argv)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertTrue(is_png(self.out("im.png")))
        r = call(plot_particles.main, self.d64, "--digits", "--gif", self.out("im.gif"))
        self.assertEqual(r.returncode, 0, r.stderr)
        r = call(plot_particles.main, self.rings, "-o", self.out("x.png"), "--digits")
        self.assertEqual(r.returncode, 2)
        self.assertIn("target.pt: points of dimension 2, not 8x8 images", r.stderr)

    def test_bad_input_is_one_line_naming_the_file(self):
        def spoiled(name, spoil):
            folder = self.out(f"bad_{name}")
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(self.rings, folder)
            spoil(os.path.join(folder, name))
            return folder
        cases = [(self.out("absent"), "absent: no such folder"),
                 (spoiled("particles.pt", os.remove), "particles.pt: no such file"),
                 (spoiled("target.pt", lambda p: torch.save({"V": torch.zeros(3, 2)}, p)),
                  "target.pt: no tensor 'U'"),
                 (spoiled("snapshots.pt", lambda p: torch.save(
                     {"step": torch.tensor([0, 1]), "Z": torch.zeros(2, 30, 3)}, p)),
                  "snapshots.pt: Z is [2, 30, 3]"),
                 (spoiled("config.yaml", os.remove), "config.yaml")]
        for folder, message in cases:
            r = call(plot_particles.main, folder, "-o", self.out("bad.png"))
            self.assertEqual(r.returncode, 2, message)
            self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
            self.assertIn(message, r.stderr)
        r = call(plot_particles.main, self.rings, "-o", self.out("bad.png"), "--steps", "0,5")
        self.assertEqual(r.returncode, 2)
        self.assertIn("snapshots.pt: no step 5", r.stderr)
        self.assertFalse(os.path.exists(self.out("bad.png")))


class Digits(unittest.TestCase):
    def test_the_digits_as_a_target_file(self):
        try:
            import sklearn  # noqa: F401
        except ImportError:
            self.skipTest("no scikit-learn (python3-sklearn)")
        import digits
        folder = tempfile.mkdtemp(prefix="digits_")
        try:
            npy, csv = os.path.join(folder, "digits.npy"), os.path.join(folder, "digits.csv")
            r = call(digits.main, npy)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("1797 x 64", r.stdout)
            X = np.load(npy)
            self.assertEqual((X.shape, X.dtype), ((1797, 64), np.float64))
            self.assertEqual((X.min(), X.max()), (0.0, 1.0))
            self.assertTrue(np.all(X * 16 == np.round(X * 16)))
            self.assertEqual(call(digits.main, csv, "--csv").returncode, 0)
            self.assertTrue(np.array_equal(np.loadtxt(csv, delimiter=","), X))
        finally:
            shutil.rmtree(folder)


if __name__ == "__main__":
    unittest.main()
