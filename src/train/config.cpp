#include "src/train/config.h"

#include <fmt/format.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "src/base/files.h"

namespace mmdflow {

namespace {

std::string where(const YAML::Node& n, const std::string& source) {
  if (!n || n.Mark().is_null()) return "";
  return fmt::format(" ({} line {})", source, n.Mark().line + 1);
}

std::string join(const std::vector<std::string>& path, const std::string& key) {
  std::string out;
  for (const auto& p : path) out += p + ".";
  return out + key;
}

// ---- values as text, both ways -------------------------------------------------------------

std::string text_of(int64_t v) { return std::to_string(v); }
std::string text_of(double v) { return fmt::format("{}", v); }  // shortest that reads back
std::string text_of(bool v) { return v ? "true" : "false"; }
std::string text_of(const c10::Device& d) { return d.str(); }
std::string text_of(const std::string& v) { return v; }
template <typename E, typename = decltype(Names<E>::table)>
std::string text_of(E v) {
  return name_of(v);
}
template <typename T>
std::string text_of(const std::optional<T>& v) {
  return v ? text_of(*v) : "~";
}
std::string text_of(const std::vector<Variant>& vs) {
  std::string out;
  for (const auto& [name, sets] : vs) out += fmt::format("{}{{{}}};", name, fmt::join(sets, ","));
  return out;
}

// Each returns "" or why the text is not a value of the type.
std::string from_text(const std::string& s, int64_t& v) {
  const char* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data() + (!s.empty() && s[0] == '+'), end, v);
  if (ec == std::errc::result_out_of_range) return "is out of range";
  return ec != std::errc() || p != end ? "must be an integer" : "";
}
std::string from_text(const std::string& s, double& v) {
  try {
    v = YAML::Node(s).as<double>();
  } catch (const YAML::Exception&) {
    return "must be a number";
  }
  return std::isfinite(v) ? "" : "must be finite";
}
std::string from_text(const std::string& s, bool& v) {
  try {
    v = YAML::Node(s).as<bool>();
  } catch (const YAML::Exception&) {
    return "must be true or false";
  }
  return "";
}
std::string from_text(const std::string& s, std::string& v) {
  if (s.empty()) return "must not be empty";
  if (s.find('\0') != std::string::npos) return "must not hold a NUL byte";
  v = s;
  return "";
}
std::string from_text(const std::string& s, c10::Device& v) {
  if (s == "cpu" || s == "cuda") {
    v = c10::Device(s);
    return "";
  }
  int64_t k = -1;
  if (s.rfind("cuda:", 0) == 0 && from_text(s.substr(5), k).empty() && k >= 0 && k < 128 &&
      s.substr(5).find_first_not_of("0123456789") == std::string::npos) {
    v = c10::Device(c10::kCUDA, c10::DeviceIndex(k));
    return "";
  }
  return "must be cpu, cuda or cuda:K (K < 128)";
}
template <typename E, typename = decltype(Names<E>::table)>
std::string from_text(const std::string& s, E& v) {
  if (auto e = from_name<E>(s)) {
    v = *e;
    return "";
  }
  return fmt::format("must be one of {}", name_list<E>());
}

template <typename T>
constexpr bool is_number = std::is_same_v<T, int64_t> || std::is_same_v<T, double>;

std::string range_of(const Key& k) {
  auto num = [](double v) { return std::abs(v) >= 1e6 ? fmt::format("{:g}", v) : text_of(v); };
  if (std::isinf(k.hi) && k.lo == 0 && k.above) return "positive";
  if (std::isinf(k.hi)) return fmt::format("{} {}", k.above ? ">" : ">=", num(k.lo));
  if (std::isinf(k.lo)) return fmt::format("{} {}", k.below ? "<" : "<=", num(k.hi));
  return fmt::format("in {}{}, {}{}", k.above ? "(" : "[", num(k.lo), num(k.hi),
                     k.below ? ")" : "]");
}

template <typename T>
std::string check(const T& v, const Key& k) {
  if constexpr (is_number<T>) {
    const double x = double(v);
    if ((k.above ? x <= k.lo : x < k.lo) || (k.below ? x >= k.hi : x > k.hi))
      return "must be " + range_of(k);
  }
  return "";
}

// ---- YAML -> Config --------------------------------------------------------------------------

// Walks a YAML tree strictly: every key must be visited once; values must convert.
class Reader {
 public:
  Reader(const YAML::Node& root, const std::string& source) : source_(source) {
    if (root && !root.IsMap() && !root.IsNull())
      throw ConfigError(
          fmt::format("the configuration must be a map of sections{}", where(root, source)));
    frames_.push_back({root, {}});
  }

  template <typename Body>
  void section(const std::string& name, Body body) {
    const YAML::Node n = lookup(name);
    if (n && !n.IsMap() && !n.IsNull()) fail(name, "must be a section of keys", n);
    path_.push_back(name);
    frames_.push_back({n, {}});
    body();
    finish();
    frames_.pop_back();
    path_.pop_back();
  }

  template <typename T>
  void key(const std::string& name, T& field, const Key& k) {
    const YAML::Node n = lookup(name);
    if (!n) return;  // absent: the default
    read(name, n, field, k);
  }

  void finish() {
    Frame& f = frames_.back();
    if (!f.node || !f.node.IsMap()) return;
    std::map<std::string, YAML::Node> first;
    for (const auto& kv : f.node) {
      if (!kv.first.IsScalar())
        throw ConfigError(
            fmt::format("{}: has a key that is not a name{}", here(), where(kv.first, source_)));
      const std::string key = kv.first.Scalar();
      auto [it, fresh] = first.emplace(key, kv.first);
      if (!fresh)
        throw ConfigError(fmt::format(
            "{}: given twice{}{}", shorten(join(path_, key)), where(it->second, source_),
            kv.first.Mark().is_null() ? ""
                                      : fmt::format(" and line {}", kv.first.Mark().line + 1)));
      if (!f.seen.count(key)) {
        std::vector<std::string> known(f.seen.begin(), f.seen.end());
        fail(shorten(key), fmt::format("unknown key (known here: {})", fmt::join(known, ", ")),
             kv.first);
      }
    }
  }

 private:
  struct Frame {
    YAML::Node node;
    std::set<std::string> seen;
  };

  std::string here() const {
    std::string out;
    for (const auto& p : path_) out += (out.empty() ? "" : ".") + p;
    return out.empty() ? "the configuration" : out;
  }

  YAML::Node lookup(const std::string& name) {
    Frame& f = frames_.back();
    f.seen.insert(name);
    const YAML::Node& node = f.node;  // const: a lookup must not insert the key
    return node && node.IsMap() ? node[name] : YAML::Node(YAML::NodeType::Undefined);
  }

  // The key itself, in the current section (for its line).
  YAML::Node key_of(const std::string& name) const {
    for (const auto& kv : frames_.back().node)
      if (kv.first.IsScalar() && kv.first.Scalar() == name) return kv.first;
    return YAML::Node(YAML::NodeType::Undefined);
  }

  [[noreturn]] void fail(const std::string& name, const std::string& msg,
                         const YAML::Node& n) const {
    throw ConfigError(fmt::format("{}: {}{}", join(path_, name), msg, where(n, source_)));
  }

  template <typename T>
  void read(const std::string& name, const YAML::Node& n, T& field, const Key& k) {
    if (n.IsNull()) fail(name, "has no value", key_of(name));  // a null value marks the line after
    if (!n.IsScalar()) fail(name, "must be a single value", n);
    T v = field;
    std::string why = from_text(n.Scalar(), v);
    if (why.empty()) why = check(v, k);
    if (!why.empty()) fail(name, fmt::format("{}, got '{}'", why, shorten(n.Scalar())), n);
    field = v;
  }
  template <typename T>
  void read(const std::string& name, const YAML::Node& n, std::optional<T>& field, const Key& k) {
    if (n.IsNull()) return field.reset();  // ~: unset
    T v = field.value_or(T{});
    read(name, n, v, k);
    field = v;
  }
  // variants: {name: {key.path: value, ...}, ...}
  void read(const std::string& name, const YAML::Node& n, std::vector<Variant>& field, const Key&) {
    if (n.IsNull()) return;
    if (!n.IsMap()) fail(name, "must map names to {key.path: value} overrides", n);
    field.clear();
    std::set<std::string> names;
    for (const auto& kv : n) {
      if (!kv.first.IsScalar()) fail(name, "has a name that is not a scalar", kv.first);
      const std::string v = kv.first.Scalar();
      if (v.empty() || v.find_first_of("/ ,=") != std::string::npos)
        fail(name, fmt::format("'{}' is not a valid name (no '/', ' ', ',', '=')", shorten(v)),
             kv.first);
      if (!names.insert(v).second) fail(name + "." + shorten(v), "given twice", kv.first);
      std::vector<std::string> sets;
      if (!kv.second.IsNull()) {
        if (!kv.second.IsMap()) fail(name + "." + v, "must map key.path to a value", kv.second);
        std::set<std::string> keys;
        for (const auto& o : kv.second) {
          if (!o.first.IsScalar() || !o.second.IsScalar())
            fail(name + "." + v, "must map key.path to a single value", o.second);
          if (!keys.insert(o.first.Scalar()).second)
            fail(name + "." + v + "." + shorten(o.first.Scalar()), "given twice", o.first);
          sets.push_back(o.first.Scalar() + "=" + o.second.Scalar());
        }
      }
      field.emplace_back(v, std::move(sets));
    }
  }

  const std::string& source_;
  std::vector<std::string> path_;
  std::vector<Frame> frames_;
};

// ---- Config -> YAML, and key texts -------------------------------------------------------

class Writer {
 public:
  template <typename Body>
  void section(const std::string& name, Body body) {
    e_ << YAML::Key << name << YAML::Value << YAML::BeginMap;
    body();
    e_ << YAML::EndMap;
  }
  template <typename T>
  void key(const std::string& name, const T& v, const Key&) {
    e_ << YAML::Key << name << YAML::Value;
    value(v);
  }
  YAML::Emitter e_;

 private:
  template <typename T>
  void value(const T& v) {
    e_ << text_of(v);
  }
  template <typename T>
  void value(const std::optional<T>& v) {
    if (v)
      value(*v);
    else
      e_ << YAML::Null;
  }
  void value(const std::vector<Variant>& vs) {
    e_ << YAML::BeginMap;
    for (const auto& [name, sets] : vs) {
      e_ << YAML::Key << name << YAML::Value << YAML::BeginMap;
      for (const auto& set : sets) {
        const auto eq = set.find('=');
        e_ << YAML::Key << set.substr(0, eq) << YAML::Value << set.substr(eq + 1);
      }
      e_ << YAML::EndMap;
    }
    e_ << YAML::EndMap;
  }
};

class Texts {
 public:
  template <typename Body>
  void section(const std::string& name, Body body) {
    path_.push_back(name);
    body();
    path_.pop_back();
  }
  template <typename T>
  void key(const std::string& name, const T& v, const Key& k) {
    out_.push_back({join(path_, name), text_of(v), k.resumable});
  }
  std::vector<KeyText> out_;

 private:
  std::vector<std::string> path_;
};

// ---- checks across keys --------------------------------------------------------------------

// flow.kernel exact: the first key, in file order, that takes the run out of the family with a
// closed-form kernel (docs/math.md, "Exact kernel"), or out of its flows.
void check_exact(const Config& c) {
  auto refuse = [](const std::string& key, const std::string& got, const std::string& want) {
    throw ConfigError(fmt::format("{}: flow.kernel exact needs {}, got {}", key, want, got));
  };
  if (!c.device.is_cpu()) refuse("device", c.device.str(), "cpu (the exact kernel runs on CPU)");
  if (c.model.hidden != 1) refuse("model.hidden", std::to_string(c.model.hidden), "1");
  if (c.model.activation != Activation::ReLU)
    refuse("model.activation", name_of(c.model.activation), "relu");
  if (c.model.output != OutputKind::Identity)
    refuse("model.output", name_of(c.model.output), "identity");
  if (c.model.hidden_bias) refuse("model.hidden_bias", "true", "false");
  if (c.model.output_bias) refuse("model.output_bias", "true", "false");
  if (c.teacher_hidden() != 1) refuse("teacher.hidden", std::to_string(c.teacher_hidden()), "1");
  if (c.teacher_activation() != Activation::ReLU)
    refuse("teacher.activation", name_of(c.teacher_activation()), "relu");
  if (c.student.layout != Layout::Block)
    refuse("student.layout", name_of(c.student.layout), "block (particles of the family)");
  if (c.flow.method == Method::Sobolev)
    throw ConfigError(
        "flow.method: sobolev descent has no population form (its Gram is indexed by inputs), so "
        "flow.kernel exact cannot run it");
  if (c.data.input == InputDist::File)
    refuse("data.input", "file", "a law to integrate over (sphere or gaussian)");
  if (c.log.data)
    throw ConfigError("log.data: flow.kernel exact trains on no data set; set it to false");
}

// kernel.slices > 0: the sliced gradient is the energy kernel's, for the flows that need no kernel
// matrix, on CPU.
void check_sliced(const Config& c) {
  if (c.kernel.name != PairKernel::Energy)
    throw ConfigError(
        fmt::format("kernel.slices: the sliced gradient needs kernel.name energy, got {}",
                    name_of(c.kernel.name)));
  if (c.flow.method == Method::Sobolev || c.flow.method == Method::DrMMD)
    throw ConfigError(fmt::format(
        "kernel.slices: flow.method {} needs the kernel's matrices; the sliced gradient takes mmd "
        "or diffusion",
        name_of(c.flow.method)));
  if (!c.device.is_cpu())
    throw ConfigError(fmt::format("kernel.slices: the sliced gradient runs on CPU, got device {}",
                                  c.device.str()));
}

// problem samples: the keys that only the other family reads, set, and the target's file.
void check_samples(const Config& c) {
  if (c.flow.kernel == Witness::Exact)
    throw ConfigError(
        "flow.kernel: exact is the network family's closed-form kernel; problem samples sums its "
        "explicit kernel (kernel.name) exactly anyway");
  if (c.student.layout != Layout::Block)
    throw ConfigError("student.layout: problem samples has points, not a dense network");
  if (c.target.law == TargetLaw::File && !c.target.file)
    throw ConfigError("target.file: target.law file needs a file (.npy, .pt or .csv)");
  if (c.target.law != TargetLaw::File && c.target.file)
    throw ConfigError(fmt::format("target.file: read only with target.law file, got law {}",
                                  name_of(c.target.law)));
  if (c.kernel.slices > 0) check_sliced(c);
  if (c.data.input == InputDist::File)
    throw ConfigError(
        "data.input: file is the network family's data; problem samples reads its "
        "target from target.file");
  if (c.teacher.file) throw ConfigError("teacher.file: problem samples has no teacher");
  if (c.log.data)
    throw ConfigError("log.data: problem samples has no data set (its target is target.pt)");
}

// problem network: its data files, and the keys that only the samples family reads.
void check_network(const Config& c) {
  const bool file = c.data.input == InputDist::File;
  for (const auto& [key, set] : {std::pair{"data.train_file", bool(c.data.train_file)},
                                 std::pair{"data.valid_file", bool(c.data.valid_file)}}) {
    if (file && !set)
      throw ConfigError(fmt::format("{}: data.input file needs it (.csv, .npy, .npz or .pt)", key));
    if (!file && set)
      throw ConfigError(fmt::format("{}: read only with data.input file, got input {}", key,
                                    name_of(c.data.input)));
  }
  if (file && c.data.fresh)
    throw ConfigError("data.fresh: new inputs need a law to draw from; data.input file has none");
  if (file && c.flow.method == Method::DrMMD && !c.teacher.file)
    throw ConfigError(
        "flow.method: drmmd needs the teacher's particles; with data.input file give them in "
        "teacher.file");
  if (c.log.data && c.data.fresh)
    throw ConfigError(
        "log.data: data.fresh draws new inputs every step, there is no training set "
        "to write; set one of them to false");
  if (c.log.snapshot_every != 0)
    throw ConfigError("log.snapshot_every: snapshots are of problem samples' points only");
  if (c.kernel.slices != 0)
    throw ConfigError("kernel.slices: the sliced gradient is problem samples' only");
  if (c.flow.method == Method::Sobolev && c.model.outputs != 1)
    throw ConfigError(fmt::format("flow.method: sobolev descent needs model.outputs = 1, got {}",
                                  c.model.outputs));
  if (c.train.batch > c.data.train_size)
    throw ConfigError(fmt::format("train.batch: must be at most data.train_size ({}), got {}",
                                  c.data.train_size, c.train.batch));
}

void validate(const Config& c) {
  if (c.samples())
    check_samples(c);
  else
    check_network(c);
  if (c.flow.kernel == Witness::Exact) check_exact(c);
  if (c.log.noise_draws > 1 && (c.flow.kernel != Witness::Exact || !c.theory()))
    throw ConfigError(
        fmt::format("log.noise_draws: {} draws need flow.kernel exact and log.theory (a sampled "
                    "run's theory.csv "
                    "holds its last step's own draw)",
                    c.log.noise_draws));
  if (c.flow.method == Method::Sobolev && c.noise.beta0 != 0)
    throw ConfigError(fmt::format(
        "noise.beta0: sobolev descent takes no noise; set it to 0, got {}", c.noise.beta0));
}

// A copy without source marks: a value from the command line has no line in the file. Counts
// the nodes copied in `nodes`, and stops past kMaxSetNodes, or kMaxSetDepth levels down (then
// counting it as past kMaxSetNodes): aliases nested ten deep make a 300-byte value a tree of
// billions of nodes, and an alias inside its own anchor (&a [*a]) a tree without end.
constexpr int64_t kMaxSetNodes = 1000;
constexpr int kMaxSetDepth = 32;
YAML::Node unmarked(const YAML::Node& n, int64_t& nodes, int depth = 0) {
  if (depth > kMaxSetDepth) nodes = kMaxSetNodes;
  if (++nodes > kMaxSetNodes) return YAML::Node();
  if (n.IsScalar()) return YAML::Node(n.Scalar());
  YAML::Node out(n.Type());
  if (n.IsSequence())
    for (const auto& item : n) out.push_back(unmarked(item, nodes, depth + 1));
  if (n.IsMap())
    for (const auto& kv : n)
      out[unmarked(kv.first, nodes, depth + 1)] = unmarked(kv.second, nodes, depth + 1);
  return out;
}

// Where a text's first YAML documents start (up to 3), and the mark of each one's first node.
struct DocumentStarts : YAML::EventHandler {
  std::vector<YAML::Mark> start, first;
  void OnDocumentStart(const YAML::Mark& m) override {
    start.push_back(m);
    first.push_back(m);
  }
  void node(const YAML::Mark& m) {
    if (first.back().pos == start.back().pos) first.back() = m;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& m, YAML::anchor_t) override { node(m); }
  void OnAlias(const YAML::Mark& m, YAML::anchor_t) override { node(m); }
  void OnScalar(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                const std::string&) override {
    node(m);
  }
  void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    node(m);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    node(m);
  }
  void OnMapEnd() override {}
};

// The one YAML document of text (null when it holds none); a second one is refused, as a key
// given twice is, instead of ignored. Throws YAML::ParserException. The documents are counted
// before any is built, at most 3: yaml-cpp 0.7 reads a token outside any collection (a ',' after
// a value) as an empty document that it never gets past, so that YAML::LoadAll fills memory.
YAML::Node one_document(const std::string& text, const std::string& source) {
  std::stringstream in(text);
  YAML::Parser parser(in);
  DocumentStarts docs;
  while (docs.start.size() < 3 && parser.HandleNextDocument(docs)) {
  }
  for (size_t k = 1; k < docs.start.size(); ++k)
    if (docs.start[k].pos == docs.start[k - 1].pos)
      throw ConfigError(
          fmt::format("{} line {} column {}: not YAML (a ',' outside any list or map?)", source,
                      docs.start[k].line + 1, docs.start[k].column + 1));
  if (docs.start.size() > 1)
    throw ConfigError(fmt::format("{} line {}: a second YAML document ('---'); a config is one",
                                  source, docs.first[1].line + 1));
  return YAML::Load(text);
}

// "a.b.c=value": sets root[a][b][c] to the YAML scalar (or flow collection) `value`.
void apply_set(YAML::Node& root, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError(fmt::format("--set {}: expected key.path=value", shorten(assignment)));
  const std::string path = assignment.substr(0, eq), text = assignment.substr(eq + 1);
  if (text.find_first_not_of(" \t") == std::string::npos)
    throw ConfigError(fmt::format("--set {}: empty value", shorten(path)));
  YAML::Node value;
  int64_t nodes = 0;
  try {
    value = unmarked(one_document(text, "--set " + shorten(path)), nodes);
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("--set {}: {}", shorten(path), e.msg));
  }
  if (nodes > kMaxSetNodes)
    throw ConfigError(fmt::format("--set {}: more than {} YAML nodes or {} levels (aliases?)",
                                  shorten(path), kMaxSetNodes, kMaxSetDepth));
  std::vector<std::string> keys;
  std::stringstream ss(path);
  for (std::string k; std::getline(ss, k, '.');) {
    if (k.empty()) throw ConfigError(fmt::format("--set {}: empty key in the path", shorten(path)));
    keys.push_back(k);
  }
  if (keys.empty() || path.back() == '.')
    throw ConfigError(fmt::format("--set {}: empty key in the path", shorten(path)));
  YAML::Node cur(root);
  for (size_t i = 0; i + 1 < keys.size(); ++i) {
    YAML::Node next = cur[keys[i]];
    if (!next || next.IsNull()) {
      next = YAML::Node(YAML::NodeType::Map);
      cur[keys[i]] = next;
    } else if (!next.IsMap()) {
      throw ConfigError(fmt::format("--set {}: '{}' is not a section", shorten(path), keys[i]));
    }
    cur.reset(next);
  }
  cur[keys.back()] = value;
}

}  // namespace

Config parse_config(const std::string& yaml, const std::vector<std::string>& sets,
                    const std::string& source) {
  YAML::Node root;
  try {
    root = one_document(yaml, source);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(fmt::format("{} line {}: {}", source, e.mark.line + 1, e.msg));
  }
  if (!root || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap())
    throw ConfigError(fmt::format("{}: the configuration must be a map of sections", source));
  for (const auto& s : sets) apply_set(root, s);
  Config c;
  Reader reader(root, source);
  visit_config(c, reader);
  reader.finish();
  validate(c);
  return c;
}

Config load_config(const std::string& path, const std::vector<std::string>& sets) {
  if (path.empty()) return parse_config("", sets);
  std::string text;
  try {
    text = read_regular_file(path, kMaxConfigBytes, true);
  } catch (const FileError& e) {
    throw ConfigError(fmt::format("config {}: {}", shorten(path), e.why()));
  }
  return parse_config(text, sets, path);
}

std::string to_yaml(const Config& c) {
  Writer w;
  w.e_ << YAML::BeginMap;
  visit_config(c, w);
  w.e_ << YAML::EndMap;
  return std::string(w.e_.c_str()) + "\n";
}

std::vector<KeyText> key_texts(const Config& c) {
  Texts t;
  visit_config(c, t);
  return t.out_;
}

std::vector<KeyDiff> differing_keys(const Config& a, const Config& b) {
  const std::vector<KeyText> ka = key_texts(a), kb = key_texts(b);
  std::vector<KeyDiff> out;
  for (size_t i = 0; i < ka.size(); ++i)
    if (ka[i].text != kb[i].text)
      out.push_back({ka[i].path, ka[i].text, kb[i].text, ka[i].resumable});
  return out;
}

std::string resumable_keys() {
  std::vector<std::string> keys;
  for (const KeyText& k : key_texts(Config{}))
    if (k.resumable) keys.push_back(k.path);
  return fmt::format("{}", fmt::join(keys, ", "));
}

}  // namespace mmdflow
