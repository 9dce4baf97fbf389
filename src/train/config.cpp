#include "src/train/config.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "data/dataset.h"
#include "models/activation.h"
#include "src/flow/flow.h"
#include "src/flow/schedule.h"

namespace mmdflow {
namespace {

std::string where(const YAML::Node& n, const std::string& source) {
  if (!n || n.Mark().is_null()) return "";
  return fmt::format(" ({} line {})", source, n.Mark().line + 1);
}

// A YAML map read strictly: every key must be asked for, values must convert.
class Section {
 public:
  Section(const YAML::Node& node, std::string path, const std::string& source)
      : node_(node), path_(std::move(path)), source_(source) {
    if (node_ && !node_.IsMap() && !node_.IsNull())
      fail(path_.empty() ? "the configuration" : path_, "must be a section of keys", node_);
  }

  template <typename T>
  void get(const std::string& key, T& out, std::function<std::string(const T&)> check = {}) {
    seen_.insert(key);
    if (!node_ || !node_.IsMap()) return;
    const YAML::Node v = node_[key];
    if (!v || v.IsNull()) return;
    if (!v.IsScalar()) fail(full(key), fmt::format("must be {}", kind<T>()), v);
    T val;
    try {
      val = v.as<T>();
    } catch (const YAML::Exception&) {
      fail(full(key), fmt::format("must be {}, got '{}'", kind<T>(), v.Scalar()), v);
    }
    if constexpr (std::is_same_v<T, double>) {
      if (!std::isfinite(val))
        fail(full(key), fmt::format("must be finite, got {}", v.Scalar()), v);
    }
    if (check) {
      std::string why = check(val);
      if (!why.empty()) fail(full(key), fmt::format("{}, got {}", why, v.Scalar()), v);
    }
    out = val;
  }

  // The node under key, read by the caller (marked as known).
  YAML::Node raw(const std::string& key) {
    seen_.insert(key);
    return node_ && node_.IsMap() ? YAML::Node(node_[key]) : YAML::Node();
  }

  Section sub(const std::string& key) {
    seen_.insert(key);
    const YAML::Node v = node_ && node_.IsMap() ? node_[key] : YAML::Node();
    return Section(v, full(key), source_);
  }

  void finish() const {
    if (!node_ || !node_.IsMap()) return;
    for (const auto& kv : node_) {
      if (!kv.first.IsScalar())
        fail(path_.empty() ? "the configuration" : path_, "has a key that is not a name", kv.first);
      const std::string key = kv.first.Scalar();
      if (!seen_.count(key)) {
        std::vector<std::string> known(seen_.begin(), seen_.end());
        fail(full(key), fmt::format("unknown key (known here: {})", fmt::join(known, ", ")),
             kv.first);
      }
    }
  }

  [[noreturn]] void fail(const std::string& key, const std::string& msg,
                         const YAML::Node& n) const {
    throw ConfigError(fmt::format("{}: {}{}", key, msg, where(n, source_)));
  }

 private:
  template <typename T>
  static const char* kind() {
    if constexpr (std::is_same_v<T, bool>) return "true or false";
    if constexpr (std::is_same_v<T, int64_t>) return "an integer";
    if constexpr (std::is_same_v<T, double>) return "a number";
    return "a string";
  }
  std::string full(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

  YAML::Node node_;
  std::string path_;
  const std::string& source_;
  std::set<std::string> seen_;
};

std::function<std::string(const int64_t&)> positive() {
  return [](const int64_t& v) { return v > 0 ? "" : "must be a positive integer"; };
}
std::function<std::string(const int64_t&)> non_negative() {
  return [](const int64_t& v) { return v >= 0 ? "" : "must be >= 0"; };
}
std::function<std::string(const double&)> positive_real() {
  return [](const double& v) { return v > 0 ? "" : "must be positive"; };
}
std::function<std::string(const double&)> non_negative_real() {
  return [](const double& v) { return v >= 0 ? "" : "must be >= 0"; };
}
template <typename F>
std::function<std::string(const std::string&)> one_of(F parse) {
  return [parse](const std::string& v) -> std::string {
    try {
      parse(v);
      return "";
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
  };
}

void parse_device(const std::string& d) {
  if (d == "cpu" || d == "cuda") return;
  if (d.rfind("cuda:", 0) == 0 && d.size() > 5 &&
      d.find_first_not_of("0123456789", 5) == std::string::npos)
    return;
  throw std::invalid_argument("unknown device '" + d + "' (valid: cpu, cuda, cuda:K)");
}

void parse_dtype(const std::string& d) {
  if (d != "float32" && d != "float64")
    throw std::invalid_argument("unknown dtype '" + d + "' (valid: float32, float64)");
}

void parse_step_schedule(const std::string& m) {
  if (m != "constant" && m != "plateau")
    throw std::invalid_argument("unknown step schedule '" + m + "' (valid: constant, plateau)");
}

void read_measure(Section& s, Config::Measure& m) {
  s.get("particles", m.particles, positive());
  s.get("init_mean", m.init_mean);
  s.get("init_std", m.init_std, non_negative_real());
}

// sweep: {seeds: K, variants: {name: {key.path: value, ...}, ...}}
void read_sweep(Section s, Config::Sweep& sw) {
  s.get("seeds", sw.seeds, positive());
  const YAML::Node v = s.raw("variants");
  if (v && !v.IsNull()) {
    if (!v.IsMap()) s.fail("sweep.variants", "must map names to {key.path: value} overrides", v);
    for (const auto& kv : v) {
      const std::string name = kv.first.as<std::string>();
      if (name.empty() || name.find_first_of("/ ,=") != std::string::npos)
        s.fail("sweep.variants",
               fmt::format("'{}' is not a valid name (no '/', ' ', ',', '=')", name), kv.first);
      std::vector<std::string> sets;
      if (!kv.second.IsNull()) {
        if (!kv.second.IsMap())
          s.fail("sweep.variants." + name, "must map key.path to a value", kv.second);
        for (const auto& o : kv.second) {
          if (!o.second.IsScalar())
            s.fail("sweep.variants." + name + "." + o.first.as<std::string>(), "must be a value",
                   o.second);
          sets.push_back(o.first.as<std::string>() + "=" + o.second.Scalar());
        }
      }
      sw.variants.emplace_back(name, std::move(sets));
    }
  }
  s.finish();
}

Config from_yaml(const YAML::Node& root, const std::string& source) {
  Config c;
  Section top(root, "", source);
  top.get("seed", c.seed, non_negative());
  top.get<std::string>("device", c.device, one_of(parse_device));
  top.get<std::string>("dtype", c.dtype, one_of(parse_dtype));
  top.get("threads", c.threads, non_negative());
  {
    Section s = top.sub("data");
    s.get<std::string>("input", c.data.input, one_of(parse_input));
    s.get("dim", c.data.dim, positive());
    s.get("train_size", c.data.train_size, positive());
    s.get("valid_size", c.data.valid_size, positive());
    s.get("fresh", c.data.fresh);
    s.finish();
  }
  {
    Section s = top.sub("model");
    s.get("hidden", c.model.hidden, positive());
    s.get("outputs", c.model.outputs, positive());
    s.get<std::string>("activation", c.model.activation, one_of(parse_activation));
    s.get<std::string>("output", c.model.output, one_of(parse_output));
    s.get("sigma", c.model.sigma, positive_real());
    s.get("lambda", c.model.lambda, positive_real());
    s.get("c", c.model.c, positive_real());
    s.get("hidden_bias", c.model.hidden_bias);
    s.get("output_bias", c.model.output_bias);
    s.finish();
  }
  {
    Section s = top.sub("teacher");
    read_measure(s, c.teacher);
    c.teacher.hidden = c.model.hidden;  // the student's family unless said otherwise
    c.teacher.activation = c.model.activation;
    s.get("hidden", c.teacher.hidden, positive());
    s.get<std::string>("activation", c.teacher.activation, one_of(parse_activation));
    s.finish();
  }
  {
    Section s = top.sub("student");
    read_measure(s, c.student);
    s.get<std::string>("layout", c.student.layout, one_of(parse_layout));
    s.finish();
  }
  {
    Section s = top.sub("flow");
    s.get<std::string>("method", c.flow.method, one_of(parse_method));
    s.get("step_size", c.flow.step_size, positive_real());
    s.get<std::string>("step_schedule", c.flow.step_schedule, one_of(parse_step_schedule));
    s.get("patience", c.flow.patience, positive());
    s.get<double>("step_factor", c.flow.step_factor, [](const double& v) -> std::string {
      return v > 0 && v < 1 ? "" : "must be in (0, 1)";
    });
    s.get("sobolev_eps", c.flow.sobolev_eps, positive_real());
    s.get("drmmd_lambda", c.flow.drmmd_lambda, positive_real());
    s.get("chunk", c.flow.chunk, non_negative());
    s.finish();
  }
  {
    Section s = top.sub("noise");
    s.get<std::string>("schedule", c.noise.schedule, one_of(parse_beta_kind));
    s.get("beta0", c.noise.beta0, non_negative_real());
    s.get("factor", c.noise.factor, positive_real());
    s.get("every", c.noise.every, positive());
    s.get("tau", c.noise.tau, positive_real());
    s.finish();
  }
  {
    Section s = top.sub("train");
    s.get("epochs", c.train.epochs, positive());
    s.get("batch", c.train.batch, positive());
    s.get("checkpoint_every", c.train.checkpoint_every, non_negative());
    s.finish();
  }
  {
    Section s = top.sub("log");
    s.get("print_every", c.log.print_every, non_negative());
    s.finish();
  }
  {
    Section s = top.sub("compare");
    s.get("samples", c.compare.samples, positive());
    s.get("nearest", c.compare.nearest, positive());
    s.finish();
  }
  read_sweep(top.sub("sweep"), c.sweep);
  top.finish();
  if (c.flow.method == "sobolev" && c.model.outputs != 1)
    throw ConfigError(fmt::format("flow.method: sobolev descent needs model.outputs = 1, got {}",
                                  c.model.outputs));
  if (c.flow.method == "sobolev" && c.noise.beta0 != 0)
    throw ConfigError(
        fmt::format("noise.beta0: sobolev descent takes no noise (MATH.md); set it to 0, got {}",
                    c.noise.beta0));
  if (c.train.batch > c.data.train_size)
    throw ConfigError(fmt::format("train.batch: must be at most data.train_size ({}), got {}",
                                  c.data.train_size, c.train.batch));
  return c;
}

// "a.b.c=value": sets root[a][b][c] to the YAML scalar (or flow sequence) `value`.
void apply_set(YAML::Node& root, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError(fmt::format("--set {}: expected key.path=value", assignment));
  const std::string path = assignment.substr(0, eq);
  YAML::Node value;
  try {
    value = YAML::Load(assignment.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("--set {}: {}", path, e.msg));
  }
  std::vector<std::string> keys;
  std::stringstream ss(path);
  for (std::string k; std::getline(ss, k, '.');) {
    if (k.empty()) throw ConfigError(fmt::format("--set {}: empty key in the path", path));
    keys.push_back(k);
  }
  YAML::Node cur(root);
  for (size_t i = 0; i + 1 < keys.size(); ++i) {
    YAML::Node next = cur[keys[i]];
    if (!next || next.IsNull()) {
      next = YAML::Node(YAML::NodeType::Map);
      cur[keys[i]] = next;
    } else if (!next.IsMap()) {
      throw ConfigError(fmt::format("--set {}: '{}' is not a section", path, keys[i]));
    }
    cur.reset(next);
  }
  cur[keys.back()] = value;
}

YAML::Node with_sets(YAML::Node root, const std::vector<std::string>& sets) {
  if (!root || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap()) throw ConfigError("the configuration must be a map of sections");
  for (const auto& s : sets) apply_set(root, s);
  return root;
}

void diff_nodes(const YAML::Node& a, const YAML::Node& b, const std::string& path,
                std::vector<std::string>& out) {
  if (a.IsMap() && b.IsMap()) {
    for (const auto& kv : a) {
      const std::string key = kv.first.as<std::string>();
      diff_nodes(kv.second, b[key], path.empty() ? key : path + "." + key, out);
    }
  } else if (!b || !a.IsScalar() || !b.IsScalar() || a.Scalar() != b.Scalar()) {
    out.push_back(path);
  }
}

// Shortest text that reads back as the same double.
std::string num(double v) { return fmt::format("{}", v); }

}  // namespace

Config parse_config(const std::string& yaml, const std::vector<std::string>& sets,
                    const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(fmt::format("{} line {}: {}", source, e.mark.line + 1, e.msg));
  }
  return from_yaml(with_sets(root, sets), source);
}

Config load_config(const std::string& path, const std::vector<std::string>& sets) {
  if (path.empty()) return parse_config("", sets);
  std::ifstream in(path);
  if (!in) throw ConfigError(fmt::format("cannot read config file '{}'", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), sets, path);
}

std::string to_yaml(const Config& c) {
  YAML::Emitter e;
  auto kv = [&](const char* k, const auto& v) { e << YAML::Key << k << YAML::Value << v; };
  auto section = [&](const char* k) { e << YAML::Key << k << YAML::Value << YAML::BeginMap; };
  auto measure = [&](const char* k, const Config::Measure& m) {
    section(k);
    kv("particles", m.particles);
    kv("init_mean", num(m.init_mean));
    kv("init_std", num(m.init_std));
  };
  e << YAML::BeginMap;
  kv("seed", c.seed);
  kv("device", c.device);
  kv("dtype", c.dtype);
  kv("threads", c.threads);
  section("data");
  kv("input", c.data.input);
  kv("dim", c.data.dim);
  kv("train_size", c.data.train_size);
  kv("valid_size", c.data.valid_size);
  kv("fresh", c.data.fresh);
  e << YAML::EndMap;
  section("model");
  kv("hidden", c.model.hidden);
  kv("outputs", c.model.outputs);
  kv("activation", c.model.activation);
  kv("output", c.model.output);
  kv("sigma", num(c.model.sigma));
  kv("lambda", num(c.model.lambda));
  kv("c", num(c.model.c));
  kv("hidden_bias", c.model.hidden_bias);
  kv("output_bias", c.model.output_bias);
  e << YAML::EndMap;
  measure("teacher", c.teacher);
  kv("hidden", c.teacher.hidden);
  kv("activation", c.teacher.activation);
  e << YAML::EndMap;
  measure("student", c.student);
  kv("layout", c.student.layout);
  e << YAML::EndMap;
  section("flow");
  kv("method", c.flow.method);
  kv("step_size", num(c.flow.step_size));
  kv("step_schedule", c.flow.step_schedule);
  kv("patience", c.flow.patience);
  kv("step_factor", num(c.flow.step_factor));
  kv("sobolev_eps", num(c.flow.sobolev_eps));
  kv("drmmd_lambda", num(c.flow.drmmd_lambda));
  kv("chunk", c.flow.chunk);
  e << YAML::EndMap;
  section("noise");
  kv("schedule", c.noise.schedule);
  kv("beta0", num(c.noise.beta0));
  kv("factor", num(c.noise.factor));
  kv("every", c.noise.every);
  kv("tau", num(c.noise.tau));
  e << YAML::EndMap;
  section("train");
  kv("epochs", c.train.epochs);
  kv("batch", c.train.batch);
  kv("checkpoint_every", c.train.checkpoint_every);
  e << YAML::EndMap;
  section("log");
  kv("print_every", c.log.print_every);
  e << YAML::EndMap;
  section("compare");
  kv("samples", c.compare.samples);
  kv("nearest", c.compare.nearest);
  e << YAML::EndMap;
  section("sweep");
  kv("seeds", c.sweep.seeds);
  e << YAML::Key << "variants" << YAML::Value << YAML::BeginMap;
  for (const auto& [name, sets] : c.sweep.variants) {
    e << YAML::Key << name << YAML::Value << YAML::BeginMap;
    for (const auto& set : sets) {
      const auto eq = set.find('=');
      e << YAML::Key << set.substr(0, eq) << YAML::Value << set.substr(eq + 1);
    }
    e << YAML::EndMap;
  }
  e << YAML::EndMap;
  e << YAML::EndMap;
  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

std::vector<std::string> differing_keys(const Config& a, const Config& b) {
  std::vector<std::string> out;
  diff_nodes(YAML::Load(to_yaml(a)), YAML::Load(to_yaml(b)), "", out);
  return out;
}

}  // namespace mmdflow
