#!/usr/bin/python3
"""tools/plot_losses.py on synthetic run and sweep folders laid out as `mmdflow train` and
`mmdflow sweep` write them (OUT/<setting>/seed<k>/config.yaml, losses.csv; OUT/curves.csv):
curves are labelled by setting and seed, also when two runs' folders have the same names; the
settings all curves share are in the title; the legend lies outside the axes; curves that
coincide keep distinct styles; the log axis labels several ticks. Exits 77 (skipped) without
matplotlib."""
import contextlib
import io
import math
import os
import shutil
import subprocess
import sys
import tempfile
import types
import unittest
from unittest import mock

try:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
except ImportError:
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.join(HERE, "..", "..", "tools")
sys.path.insert(0, TOOLS)
import plot_losses  # noqa: E402

# The keys a resolved config.yaml holds that the plot reads, with the paper's small study's values.
CONFIG = {"seed": 0, "device": "cpu", "dtype": "float32", "threads": 1, "problem": "network",
          "data": {"input": "sphere", "dim": 50, "train_size": 1000, "valid_size": 1000},
          "model": {"hidden": 3, "outputs": 1, "activation": "relu", "output": "gaussian",
                    "sigma": 2},
          "teacher": {"particles": 1, "init_mean": 0, "init_std": 1},
          "student": {"particles": 500, "init_mean": 0.001, "init_std": 1, "layout": "block"},
          "flow": {"method": "mmd", "step_size": 1, "sobolev_eps": "1e-06"},
          "noise": {"schedule": "step", "beta0": 1, "factor": 0.5, "every": 200},
          "train": {"epochs": 40, "batch": 100, "checkpoint_every": 100},
          "log": {"print_every": 1}}


def config_text(config, indent=""):
    """A nested dict as mmdflow writes config.yaml: sections of indented `key: value` lines."""
    out = ""
    for key, value in config.items():
        if isinstance(value, dict):
            out += f"{indent}{key}:\n" + config_text(value, indent + "  ")
        else:
            out += f"{indent}{key}: {value}\n"
    return out


def with_keys(**sets):
    """CONFIG with dotted keys replaced: with_keys(student__layout="dense")."""
    config = {k: dict(v) if isinstance(v, dict) else v for k, v in CONFIG.items()}
    for dotted, value in sets.items():
        section, _, key = dotted.partition("__")
        if key:
            config[section][key] = value
        else:
            config[section] = value
    return config


def losses(scale, epochs=40):
    """Losses falling from `scale` over `epochs` epochs: [(epoch, train, valid)]."""
    return [(e, scale * math.exp(-e / 15) * 0.9, scale * math.exp(-e / 20)) for e in
            range(1, epochs + 1)]


def make_run(folder, config, rows):
    os.makedirs(folder)
    with open(os.path.join(folder, "config.yaml"), "w") as f:
        f.write(config_text(config))
    with open(os.path.join(folder, "losses.csv"), "w") as f:
        f.write("epoch,train_loss,valid_loss,beta,step_size,grad_sq,noisy_grad_sq,seconds\n")
        for e, t, v in rows:
            f.write(f"{e},{t!r},{v!r},0,1,0.1,0.1,{0.01 * e}\n")


def make_sweep(folder, settings, seeds=3):
    """A sweep folder: per setting (name, config, scale) its seeds' run folders and curves.csv."""
    header = ("setting,epoch,runs,train_mean,train_std,train_min,train_max,valid_mean,valid_std,"
              "valid_min,valid_max,train_gmean,train_gstd,valid_gmean,valid_gstd\n")
    lines = header
    for name, config, scale in settings:
        for k in range(seeds):
            make_run(os.path.join(folder, name, f"seed{k}"), dict(config, seed=k),
                     losses(scale * (1 + 0.1 * k)))
        for e, t, v in losses(scale):
            lines += f"{name},{e},{seeds},{t},0,{t},{t},{v},0,{v},{v},{t},1.3,{v},1.3\n"
    with open(os.path.join(folder, "curves.csv"), "w") as f:
        f.write(lines)


def call(main, *argv):
    """main run in this process: exit status, stdout, stderr, and the figures it saved."""
    out, err, saved = io.StringIO(), io.StringIO(), []
    real = Figure.savefig

    def keep(fig, *args, **kwargs):
        saved.append(fig)
        return real(fig, *args, **kwargs)

    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            mock.patch.object(Figure, "savefig", keep):
        try:
            rc = main(list(argv))
        except SystemExit as e:
            rc = e.code
    return types.SimpleNamespace(returncode=rc or 0, stdout=out.getvalue(),
                                 stderr=err.getvalue(), figures=saved)


class PlotLosses(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="plot_losses_")
        # The same folder names (mmd/seed0) under two sweeps of different settings.
        cls.block = os.path.join(cls.dir, "block")
        cls.dense = os.path.join(cls.dir, "dense")
        make_sweep(cls.block, [("mmd", with_keys(noise__beta0=0), 0.3),
                               ("noise", CONFIG, 0.2)])
        make_sweep(cls.dense, [("mmd", with_keys(noise__beta0=0, student__layout="dense"), 0.3),
                               ("noise", with_keys(student__layout="dense"), 0.3)])
        # Two runs outside a sweep, same losses, different step sizes.
        cls.run_a = os.path.join(cls.dir, "a", "run")
        cls.run_b = os.path.join(cls.dir, "b", "run")
        make_run(cls.run_a, CONFIG, losses(1.2e-3, 4))
        make_run(cls.run_b, with_keys(flow__step_size=0.5), losses(1.2e-3, 4))
        cls.run_c = os.path.join(cls.dir, "c", "run")
        make_run(cls.run_c, CONFIG, losses(1.1e-3, 4))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir)

    def plot(self, *argv):
        r = call(plot_losses.main, *argv, "-o", os.path.join(self.dir, "out.png"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.figures), 1)
        fig = r.figures[0]
        ax = fig.axes[0]
        handles, labels = ax.get_legend_handles_labels()
        return fig, ax, handles, labels

    def test_runs_of_two_sweeps_are_labelled_by_setting_and_seed(self):
        _, _, _, labels = self.plot(os.path.join(self.block, "mmd", "seed0"),
                                    os.path.join(self.dense, "mmd", "seed0"),
                                    os.path.join(self.dense, "mmd", "seed1"))
        self.assertEqual(len(set(labels)), 3, labels)
        self.assertTrue(all(lab.startswith("mmd") for lab in labels), labels)
        self.assertIn("layout=block", labels[0])
        self.assertIn("layout=dense", labels[1])
        self.assertEqual(["seed 0" in labels[0], "seed 0" in labels[1], "seed 1" in labels[2]],
                         [True] * 3, labels)

    def test_runs_outside_a_sweep_are_labelled_by_what_sets_them_apart(self):
        _, _, _, labels = self.plot(self.run_a, self.run_b, "--metric", "both")
        self.assertEqual(labels, ["run [γ=1], seed 0 (train)", "run [γ=1], seed 0 (valid)",
                                  "run [γ=0.5], seed 0 (train)", "run [γ=0.5], seed 0 (valid)"])
        # The same config in two folders of the same name: their paths tell them apart.
        _, _, _, labels = self.plot(self.run_a, self.run_c)
        self.assertEqual(labels, [f"run [{self.run_a}], seed 0", f"run [{self.run_c}], seed 0"])

    def test_sweeps_with_the_same_setting_names_stay_apart(self):
        _, _, _, labels = self.plot(self.block, self.dense)
        self.assertEqual(labels, ["mmd [layout=block, β₀=0], 3 seeds",
                                  "noise [layout=block, β₀=1], 3 seeds",
                                  "mmd [layout=dense, β₀=0], 3 seeds",
                                  "noise [layout=dense, β₀=1], 3 seeds"])
        # Within one sweep: the setting's name and the keys its variant sets.
        _, _, _, labels = self.plot(self.block)
        self.assertEqual(labels, ["mmd [β₀=0], 3 seeds", "noise [β₀=1], 3 seeds"])

    def test_the_shared_settings_are_in_the_title(self):
        _, ax, _, _ = self.plot(self.block, "--title", "Figure 1, small")
        title = ax.get_title()
        self.assertTrue(title.startswith("Figure 1, small\n"), title)
        for part in ("block layout", "d = 50", "H = 3", "M = 1", "N = 500", "flow mmd", "γ = 1",
                     "40 epochs", "batch 100"):
            self.assertIn(part, title)
        self.assertNotIn("β₀ =", title)  # it differs between the settings
        _, ax, _, _ = self.plot(self.run_a)
        self.assertIn("β₀ = 1, β × 0.5 every 200 epochs", ax.get_title())

    def test_a_label_leaves_out_what_does_not_act_on_its_run(self):
        # As the three-ring runs: plain, noise with its own schedule, DrMMD with λ and no noise.
        runs = [os.path.join(self.dir, "inert", name, "run") for name in ("mmd", "noise", "drmmd")]
        make_run(runs[0], with_keys(noise__beta0=0), losses(1e-3, 4))
        make_run(runs[1], with_keys(noise__beta0=0.3, noise__every=2000), losses(1e-3, 4))
        make_run(runs[2], with_keys(noise__beta0=0, flow__method="drmmd", flow__drmmd_lambda=1e-3,
                                    flow__step_size=1e-4), losses(1e-3, 4))
        _, _, _, labels = self.plot(*runs)
        self.assertEqual(labels, ["run [flow=mmd, γ=1, β₀=0], seed 0",
                                  "run [flow=mmd, γ=1, β₀=0.3, β every=2000], seed 0",
                                  "run [flow=drmmd, γ=0.0001, β₀=0, λ=0.001], seed 0"])

    def test_the_y_label_says_what_the_loss_is(self):
        _, ax, _, _ = self.plot(self.run_a)
        self.assertEqual(ax.get_ylabel(), "validation loss  (1/2 MMD$^2$)")
        data = os.path.join(self.dir, "data", "run")
        make_run(data, with_keys(data__input="file"), losses(1.2e-3, 4))
        _, ax, _, _ = self.plot(data)
        self.assertEqual(ax.get_ylabel(), "validation loss  (1/2 squared error to the data's "
                                          "outputs)")
        _, ax, _, _ = self.plot(data, self.run_a)
        self.assertEqual(ax.get_ylabel(), "validation loss")

    def test_the_legend_lies_outside_the_axes(self):
        fig, ax, _, _ = self.plot(self.block, self.dense)
        fig.canvas.draw()
        legend = ax.get_legend().get_window_extent()
        self.assertGreaterEqual(legend.x0, ax.get_window_extent().x1)

    def test_curves_that_coincide_keep_distinct_styles(self):
        # dense's two settings have the same curves, and so do run_a and run_b: each has its own
        # colour and marker, its markers at other epochs, and the later one is drawn thinner on top.
        for folders in ([self.dense], [self.run_a, self.run_b]):
            _, _, handles, _ = self.plot(*folders)
            for what in (lambda h: h.get_color(), lambda h: h.get_marker(),
                         lambda h: str(h.get_markevery()), lambda h: h.get_linewidth()):
                self.assertEqual(len({what(h) for h in handles}), len(handles))
            self.assertGreater(handles[0].get_linewidth(), handles[1].get_linewidth())
            self.assertLess(handles[0].get_zorder(), handles[1].get_zorder())

    def test_a_log_axis_labels_several_ticks(self):
        # Less than a decade (run_a: 1.2e-3 to 9e-4) and several decades (the sweeps).
        for folders in ([self.run_a], [self.block, self.dense]):
            fig, ax, _, _ = self.plot(*folders)
            fig.canvas.draw()
            lo, hi = ax.get_ylim()
            shown = [t.get_text() for t in ax.get_yticklabels()
                     if t.get_text() and lo <= t.get_position()[1] <= hi]
            self.assertGreaterEqual(len(shown), 2, shown)

    def test_the_command_line_draws_and_refuses(self):
        png = os.path.join(self.dir, "cli.png")
        tool = os.path.join(TOOLS, "plot_losses.py")
        r = subprocess.run([sys.executable, tool, self.block, "--settings", "noise", "--metric",
                            "train", "-o", png], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(png, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        r = subprocess.run([sys.executable, tool, self.dir, "-o", png], capture_output=True,
                           text=True, timeout=120)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(f"{self.dir} holds neither losses.csv nor curves.csv", r.stderr)


if __name__ == "__main__":
    unittest.main()
