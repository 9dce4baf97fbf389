#include "src/cli/commands.h"

#include <c10/util/Exception.h>
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <optional>

#include "models/weights.h"
#include "src/base/device.h"
#include "src/base/errors.h"
#include "src/base/random.h"
#include "src/cli/bench.h"
#include "src/cli/options.h"
#include "src/cli/signals.h"
#include "src/cli/sweep.h"
#include "src/comm/launch.h"
#include "src/train/build.h"
#include "src/train/compare.h"
#include "src/train/memory.h"
#include "src/train/results.h"
#include "src/train/run_folder.h"

namespace fs = std::filesystem;

namespace mmdflow {

int cmd_train(int argc, char** argv);  // src/cli/train.cpp

namespace {

constexpr const char* kTopHelp =
    R"(mmdflow: the Wasserstein gradient flow of the MMD for mean-field two-layer networks

usage: mmdflow <command> [options]

commands:
  train     train a student network toward a teacher (no --config: the quick start)
  compare   compare a finished run's student with its teacher
  sweep     run every setting and seed of a study, or plan or collect them
  bench     time the flow step against this machine's matrix-product throughput

'mmdflow <command> --help' lists a command's options. Under a launcher that sets WORLD_SIZE > 1
(torchrun, srun, mpirun), train, compare and bench shard the particles over its processes.
)";

int cmd_compare(int argc, char** argv) {
  cxxopts::Options o("mmdflow compare",
                     "Compare a finished run's student with its teacher: 1/2 MMD^2 on fresh "
                     "inputs (on data files: the test loss on the validation rows), nearest "
                     "student particles of each teacher particle.");
  o.add_options()("r,run", "the run's output folder", cxxopts::value<std::string>())(
      "samples", "fresh inputs (default: the run's compare.samples)",
      cxxopts::value<std::string>())("nearest", "student particles listed per teacher particle",
                                     cxxopts::value<std::string>())("h,help", "show this help");
  auto r = parse(o, argc, argv);
  if (!r) return kOk;
  const Launch launch = launch_of_process();
  if (!r->count("run")) throw UsageError("--run DIR is required");
  const std::string dir = (*r)["run"].as<std::string>();
  if (!fs::is_regular_file(fs::symlink_status(dir + "/config.yaml")))
    throw UsageError(fmt::format("--run {}: no config.yaml there", shorten(dir)));
  std::vector<std::string> sets;
  if (r->count("samples")) sets.push_back("compare.samples=" + (*r)["samples"].as<std::string>());
  if (r->count("nearest")) sets.push_back("compare.nearest=" + (*r)["nearest"].as<std::string>());
  const Config cfg = load_config(dir + "/config.yaml", sets);
  set_threads(cfg.threads);
  if (cfg.samples()) {  // one process: the points and the target are whole files
    const auto [Z, U] = read_points(dir, cfg);
    const SampleTarget target = make_sample_target(
        U, {cfg.kernel.name, cfg.kernel.bandwidth, cfg.kernel.c}, Method::MMD, 0);
    print_result(format_table(compare_points(cfg, Z, target)));
    return kOk;
  }
  std::unique_ptr<Comm> comm = comm_of(launch, cfg, job_of("compare --run", dir));
  check_shardable(cfg, comm->world());
  check_memory(cfg, Work::Compare, comm->world());
  const Shard shard = shard_of(cfg, comm->rank(), comm->world());
  const std::unique_ptr<Student> student = student_of(cfg, read_student(dir, cfg, shard), shard);
  Comparison c;
  std::optional<ParticleNet> teacher;
  if (has_teacher(cfg))
    teacher.emplace(teacher_family_of(cfg), particles_of(read_teacher(dir, cfg)));
  if (cfg.data.input == InputDist::File) {  // the validation set: the run's copy, or its file
    const std::string kept = dir + "/valid_data.pt";
    const bool own = fs::exists(fs::symlink_status(kept));
    c = compare_on_data(*student,
                        data_file(cfg, own ? "the run's copy" : "data.valid_file",
                                  own ? kept : *cfg.data.valid_file, c10::kCPU, !own),
                        *comm, teacher ? &*teacher : nullptr, cfg.compare.nearest);
  } else {
    at::Generator gen = stream_generator(cfg.seed, kCompareStream);
    c = compare(*student, *teacher, cfg.data.input, cfg.compare.samples, cfg.compare.nearest, gen,
                *comm, cfg.flow.kernel == Witness::Exact);
  }
  if (comm->rank() == 0) print_result(format_table(c));
  return kOk;
}

std::vector<int64_t> parse_sizes(const std::string& s) {
  std::vector<int64_t> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t end = s.find(',', pos);
    if (end == std::string::npos) end = s.size();
    const std::string item = s.substr(pos, end - pos);
    int64_t v = 0;
    auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (item.empty() || ec != std::errc() || p != item.data() + item.size() || v <= 0 ||
        v > int64_t(kMaxCount))
      throw UsageError(fmt::format("--particles: '{}' is not an integer in [1, {:g}]",
                                   shorten(item), kMaxCount));
    out.push_back(v);
    pos = end + 1;
  }
  return out;
}

int cmd_bench(int argc, char** argv) {
  cxxopts::Options o("mmdflow bench",
                     "Time the flow step (median over repeats after warm-up) and compare its "
                     "GFLOP/s on the first-layer products with this machine's float32 "
                     "matrix-product throughput, measured in the same run. Under WORLD_SIZE > 1, "
                     "each process steps its shard and the share of a step spent in "
                     "communication is reported.");
  add_config_options(o);
  o.add_options()("particles", "student sizes, e.g. 1000,10000 (default: the config's)",
                  cxxopts::value<std::string>())(
      "batch", "inputs per step (default: the config's train.batch)",
      cxxopts::value<std::string>())("repeats", "timed steps per size",
                                     cxxopts::value<std::string>()->default_value("20"))(
      "busy",
      "start K busy-loop processes and time the step at the configured threads against one "
      "thread under them (median and worst of --repeats steps each)",
      cxxopts::value<std::string>());
  auto r = parse(o, argc, argv);
  if (!r) return kOk;
  const Launch launch = launch_of_process();
  Config cfg = config_from(*r);
  cfg.threads = set_threads(cfg.threads);
  BenchOptions bo;
  if (r->count("particles")) bo.particles = parse_sizes((*r)["particles"].as<std::string>());
  if (r->count("batch")) bo.batch = int_option(*r, "batch", 1, 1 << 24);
  bo.repeats = int_option(*r, "repeats", 1, 1000000);
  if (r->count("busy")) {
    bo.busy = int_option(*r, "busy", 1, 1024);
    if (launch.world > 1)
      throw UsageError(fmt::format("--busy: one process only (WORLD_SIZE is {})", launch.world));
    if (cfg.samples() || cfg.flow.kernel == Witness::Exact)
      throw UsageError(
          "--busy: times the network's step (not the samples family or the exact kernel)");
  }
  std::unique_ptr<Comm> comm = comm_of(launch, cfg, "bench");
  Config largest = cfg;  // as run_bench runs its largest size: the MMD flow, block layout
  largest.flow.method = Method::MMD;
  if (!bo.particles.empty())
    largest.student.particles = *std::max_element(bo.particles.begin(), bo.particles.end());
  if (bo.batch > 0) largest.train.batch = bo.batch;
  largest.student.layout = Layout::Block;
  check_memory(largest, Work::Bench, comm->world());
  run_bench(cfg, bo, *comm);
  return kOk;
}

int cmd_sweep(int argc, char** argv) {
  cxxopts::Options o("mmdflow sweep",
                     "Run every setting (sweep.variants of the config x --grid values) and seed "
                     "as `mmdflow train` processes, J at a time, one folder per run; runs already "
                     "complete are kept. Writes sweep.csv (a row per run) and curves.csv (mean, "
                     "sample std, min, max, geometric mean and std of the losses over seeds, per "
                     "setting and epoch). "
                     "--plan prints the runs' command lines instead (for a scheduler); --collect "
                     "only writes the tables from the run folders there.");
  o.add_options()("c,config", "the study's YAML config (a train config with a sweep section)",
                  cxxopts::value<std::string>())(
      "s,set", "override a key of every run: key.path=value (repeatable)",
      cxxopts::value<std::vector<std::string>>())(
      "g,grid", "an axis: key.path=v1,v2,... (repeatable; the product is run)",
      cxxopts::value<std::vector<std::string>>())(
      "seeds", "seeds per setting (default: the config's sweep.seeds)",
      cxxopts::value<std::string>())("j,jobs", "runs at once (default: one per core)",
                                     cxxopts::value<std::string>())(
      "o,out", "the sweep folder (default: runs/<config>)", cxxopts::value<std::string>())(
      "extend", "let a rerun into a sweep folder change its settings (runs already there stay)")(
      "plan", "print one `mmdflow train` command line per run still to do; run nothing")(
      "collect", "write sweep.csv and curves.csv from the run folders; run nothing")(
      "h,help", "show this help");
  auto r = parse(o, argc, argv);
  if (!r) return kOk;
  if (!r->count("config")) throw UsageError("--config FILE is required");
  if (r->count("plan") && r->count("collect"))
    throw UsageError("--plan and --collect exclude each other");
  SweepOptions so;
  so.config_path = (*r)["config"].as<std::string>();
  if (so.config_path.empty()) throw UsageError("--config: an empty file name");
  if (r->count("set")) so.sets = (*r)["set"].as<std::vector<std::string>>();
  if (r->count("grid")) so.grid = (*r)["grid"].as<std::vector<std::string>>();
  if (r->count("seeds")) so.seeds = int_option(*r, "seeds", 1, 1000000);
  if (r->count("jobs")) so.jobs = int_option(*r, "jobs", 1, 4096);
  so.extend = r->count("extend") > 0;
  so.mode = r->count("plan")      ? SweepMode::Plan
            : r->count("collect") ? SweepMode::Collect
                                  : SweepMode::Run;
  so.out = r->count("out") ? (*r)["out"].as<std::string>()
                           : "runs/" + fs::path(so.config_path).stem().string();
  if (so.out.empty()) throw UsageError("--out: an empty folder name");
  return run_sweep(so, fs::read_symlink("/proc/self/exe").string());
}

// An error's message: LibTorch's without its backtrace.
std::string message_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const c10::Error& c) {
    return c.what_without_backtrace();
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "an unknown error";
  }
}

}  // namespace

int run_cli(int argc, char** argv) {
  ignore_file_size_signal();
  keep_heap_pad();
  const std::string cmd = argc > 1 ? argv[1] : "";
  try {
    if (cmd == "train") return cmd_train(argc - 1, argv + 1);
    if (cmd == "compare") return cmd_compare(argc - 1, argv + 1);
    if (cmd == "bench") return cmd_bench(argc - 1, argv + 1);
    if (cmd == "sweep") return cmd_sweep(argc - 1, argv + 1);
    if (cmd == "--version") {
      fmt::print("mmdflow {}\n", MMDFLOW_VERSION);
      return kOk;
    }
    if (cmd == "-h" || cmd == "--help" || cmd.empty()) {
      fmt::print(cmd.empty() ? stderr : stdout, "{}", kTopHelp);
      return cmd.empty() ? kBadInput : kOk;
    }
    throw UsageError(
        fmt::format("unknown command '{}' (valid: train, compare, sweep, bench)", shorten(cmd)));
  } catch (...) {
    const std::exception_ptr e = std::current_exception();
    print_error(message_of(e));
    const int code = exit_code_of(e);
    if (code == kLostPeer) {  // a process group with a lost peer may not close cleanly
      std::fflush(nullptr);
      std::_Exit(code);
    }
    return code;
  }
}

}  // namespace mmdflow
