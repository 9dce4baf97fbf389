// Typed run configuration. YAML becomes a Config in one place (config.cpp): unknown keys and bad
// values are rejected with the key's path (and line); to_yaml writes it back with every default
// filled in. The defaults are the quick-start experiment (configs/quickstart.yaml).
#pragma once
#include <cstdint>
#include "src/base/errors.h"
#include <string>
#include <vector>

namespace mmdflow {

struct Config {
  int64_t seed = 0;
  std::string device = "cpu";     // cpu | cuda | cuda:K
  std::string dtype = "float32";  // float32 | float64
  int64_t threads = 0;            // 0: one per core

  struct Data {
    std::string input = "sphere";  // sphere | gaussian
    int64_t dim = 10;              // d
    int64_t train_size = 500;
    int64_t valid_size = 500;
    bool fresh =
        false;  // true: every step draws fresh inputs (an epoch is train_size / batch steps)
  } data;

  struct Model {          // the particle family of teacher and student
    int64_t hidden = 3;   // H
    int64_t outputs = 1;  // o
    std::string activation = "relu";
    std::string output = "gaussian";
    double sigma = 2.0;   // gaussian: exp(-u^2 / sigma^2)
    double lambda = 1.0;  // laplace:  exp(-lambda |u|)
    double c = 1.0;       // imq:      1 / (c^2 + u^2)
    bool hidden_bias = false;
    bool output_bias = false;
  } model;

  struct Measure {
    int64_t particles;
    double init_mean;
    double init_std;
  };
  struct Teacher : Measure {
    int64_t hidden = 3;               // H of the teacher's particles (misspecified: != model)
    std::string activation = "relu";  // likewise
  } teacher{{1, 0.0, 1.0}};
  struct Student : Measure {
    std::string layout = "block";  // block | dense (the original code's network)
  } student{{200, 0.001, 1.0}};

  struct Flow {
    std::string method = "mmd";              // mmd | diffusion | sobolev | drmmd
    double step_size = 1.0;                  // gamma
    std::string step_schedule = "constant";  // constant | plateau
    int64_t patience = 20;      // plateau: epochs without a better train loss before a cut
    double step_factor = 0.5;   // plateau: gamma <- step_factor gamma
    double sobolev_eps = 1e-6;  // sobolev: (S + eps I)^{-1}
    double drmmd_lambda = 1.0;  // drmmd: lambda
    int64_t chunk = 8192;       // particles per chunk; 0: all at once
  } flow;

  struct Noise {
    std::string schedule = "step";  // constant | step | exponential | inverse
    double beta0 = 1.0;
    double factor = 0.5;  // step
    int64_t every = 50;   // step
    double tau = 100.0;   // exponential, inverse
  } noise;

  struct Train {
    int64_t epochs = 300;
    int64_t batch = 50;
    int64_t checkpoint_every = 100;  // epochs between checkpoints; 0: only at the end
  } train;

  struct Log {
    int64_t print_every = 0;  // epochs between plain progress lines; 0: about 20 lines a run
  } log;

  struct Compare {
    int64_t samples = 10000;  // fresh inputs for the final 1/2 MMD^2
    int64_t nearest = 5;      // nearest student particles listed per teacher particle
  } compare;

  struct Sweep {        // read by `mmdflow sweep`; `train` ignores it
    int64_t seeds = 1;  // seeds 0 .. seeds-1 of every setting
    // Named settings, each a list of "key.path=value" overrides of this configuration.
    std::vector<std::pair<std::string, std::vector<std::string>>> variants;
  } sweep;
};

// Loads path (empty: the defaults), applies "key.path=value" overrides, validates.
Config load_config(const std::string& path, const std::vector<std::string>& sets = {});
// The same from YAML text; `source` names it in messages.
Config parse_config(const std::string& yaml, const std::vector<std::string>& sets = {},
                    const std::string& source = "<config>");
std::string to_yaml(const Config& c);
// Dotted paths of the keys whose values differ between a and b, e.g. {"train.epochs"}.
std::vector<std::string> differing_keys(const Config& a, const Config& b);

}  // namespace mmdflow
