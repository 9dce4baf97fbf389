#include "src/train/run.h"

#include <fmt/format.h>

#include <csignal>
#include <exception>
#include <optional>

#include "src/base/failpoint.h"
#include "src/base/random.h"
#include "src/train/compare.h"
#include "src/train/memory.h"
#include "src/train/run_folder.h"
#include "src/train/summary.h"

namespace mmdflow {
namespace {

// "after epoch E" or "after epoch E and B steps of epoch E + 1".
std::string position(const TrainerState& s) {
  if (s.batch == 0) return fmt::format("after epoch {}", s.epoch);
  return fmt::format("after epoch {} and {} step{} of epoch {}", s.epoch, s.batch,
                     s.batch == 1 ? "" : "s", s.epoch + 1);
}

// Runs `step` on every rank; when it fails on any, every rank throws: the failing ones their own
// error, the others Failed with the first failing rank's code, saying what that rank `did`.
// Nothing collective may run inside.
template <typename F>
void on_every_rank(Comm& comm, F&& step, const char* did = "failed to start") {
  gather_after(
      comm, 0,
      [&]() -> std::vector<double> {
        step();
        return {};
      },
      [did](int r, int code) {
        throw Failed(fmt::format("stopping: rank {} {} (exit {}), see its message", r, did, code),
                     code);
      });
}

// Every rank runs rank 0's configuration (the threads may differ between machines); a default
// --out is rank 0's. Whether the ranks' folders are one is found once rank 0 made it
// (agree_on_folder).
void agree_on_setup(Comm& comm, const Config& cfg, std::string& out, bool out_given) {
  Config mine = cfg;
  mine.threads = 0;
  const std::string text = to_yaml(mine), theirs = comm.from_rank0("config", text);
  const std::string out0 = comm.from_rank0("out", out);
  std::string why;
  if (theirs != text) {
    const auto d = differing_keys(parse_config(theirs, {}, "rank 0's config"), mine);
    why = d.empty() ? "its configuration differs from rank 0's"
                    : fmt::format(
                          "its configuration differs from rank 0's: {} is {} here, {} on "
                          "rank 0",
                          d[0].path, shorten(d[0].b), shorten(d[0].a));
  }
  if (!out_given) out = out0;
  const auto all = comm.gather({why.empty() ? 0.0 : 1.0});
  if (!why.empty()) throw ConfigError(why + ": every rank must run the same command");
  std::vector<int> others;
  for (int r = 0; r < comm.world(); ++r)
    if (all[r][0] != 0) others.push_back(r);
  if (!others.empty())
    throw ConfigError(fmt::format(
        "rank {} runs another configuration than this one: every rank must run the same command",
        fmt::join(others, ", ")));
}

// Every rank finds, at its own spelling of the folder, the token rank 0 (the writer) put in it:
// one folder, on one file system, whatever the spelling. Otherwise every rank throws
// ConfigError and the writer removes the folder it created.
void agree_on_folder(Comm& comm, RunFolder& folder) {
  const std::string shared = comm.from_rank0(
      "folder", comm.rank() == 0 ? folder.token() + "\n" + folder.dir() : std::string());
  const std::string token = shared.substr(0, shared.find('\n')),
                    dir0 = shared.substr(std::min(shared.size(), token.size() + 1));
  const bool same = comm.rank() == 0 || RunFolder::read_token(folder.dir()) == token;
  const auto all = comm.gather({same ? 0.0 : 1.0});
  std::vector<int> others;
  for (int r = 0; r < comm.world(); ++r)
    if (all[r][0] != 0) others.push_back(r);
  if (others.empty()) return;
  folder.abandon();
  if (!same)
    throw ConfigError(fmt::format(
        "its folder {} is not rank 0's {} (rank 0's run folder is not there: another folder, or "
        "a path local to each machine): every rank must see one folder, on a shared file system",
        shorten(folder.dir()), shorten(dir0)));
  throw ConfigError(fmt::format(
      "rank {} does not see this run folder {} at its --out: every rank must see one folder, "
      "on a shared file system",
      fmt::join(others, ", "), shorten(folder.dir())));
}

// A stop answer above every signal number: rank 0 could not write a log line.
constexpr int kWriteStop = 1000;

// Test hook (src/base/failpoint.h): SIGTERM sent by the process itself at point p, as a
// pre-emption's late signal would arrive.
void failpoint(Failpoint p) {
  if (failpoint_armed(p)) std::raise(SIGTERM);
}

class Run {
 public:
  Run(RunRequest req, Comm& comm, const RunHooks& hooks)
      : req_(std::move(req)), cfg_(req_.cfg), comm_(comm), hooks_(hooks), lead_(comm.rank() == 0) {}

  Outcome go() {
    if (comm_.world() > 1) agree_on_setup(comm_, cfg_, req_.out, req_.out_given);
    check();
    open();
    const Trainer::End end = train();
    check_logs_written();
    if (hooks_.on_trained) hooks_.on_trained();
    if (end == Trainer::End::Stopped) return stopped();
    Summary s = summary();
    if (end == Trainer::End::NonFinite) return non_finite(s);
    return done(s);
  }

 private:
  RunFolder::Mode mode() const {
    return req_.resume ? RunFolder::Mode::Resume : RunFolder::Mode::Fresh;
  }
  void say(const std::string& text) const {
    if (lead_ && hooks_.say) hooks_.say(text);
  }

  // Everything is checked and built before the first write: bad input leaves the folder as is.
  void check() {
    on_every_rank(comm_, [&] {
      device_of(cfg_, comm_);
      check_shardable(cfg_, comm_.world());
      RunFolder::check(req_.out, mode());
      check_memory(cfg_, Work::Train, comm_.world());
    });
    trainer_.emplace(cfg_, build_parts(cfg_, comm_), &comm_);
  }

  // The folder opened (a resumed run's checkpoint loaded, its logs cut back to it), the trainer
  // restored, and rank 0's config, logs and set-up lines written.
  void open() {
    std::optional<Checkpoint> ckpt;
    std::string kept_losses, kept_theory;
    int64_t epoch = 0;
    on_every_rank(comm_, [&] { folder_.emplace(req_.out, mode(), lead_); });
    if (comm_.world() > 1) agree_on_folder(comm_, *folder_);
    on_every_rank(comm_, [&] {
      if (req_.resume) ckpt = folder_->load_checkpoint(cfg_, trainer_->measure().shard());
      epoch = ckpt ? ckpt->state.epoch : 0;
      trainer_->results().open(*folder_, epoch);
      if (lead_) kept_losses = folder_->losses_upto(epoch);
      if (lead_ && cfg_.theory()) kept_theory = folder_->theory_upto(epoch);
      if (lead_) diverge_ = divergence_of(kept_losses);
    });
    saved_ = ckpt ? position(ckpt->state) : "";
    if (ckpt) trainer_->restore(std::move(ckpt->state));
    // Rank 0's first writes: a full disk there ends every rank with its exit 4, not a lost peer.
    on_every_rank(comm_, [&] {
      if (!lead_) return;
      folder_->write_config(cfg_);
      trainer_->results().write_start(*folder_, epoch);
      folder_->open_losses(kept_losses);
      if (cfg_.theory()) folder_->open_theory(kept_theory);
    });
    if (!lead_) return;
    const int world = comm_.world();
    say(setup_line(cfg_, req_.out, world));
    const int64_t blocks = (cfg_.student.particles + kNoiseBlock - 1) / kNoiseBlock;
    if (blocks < world)
      say(fmt::format("  {} processes share {} block(s) of {} particles: {} of them hold none\n",
                      world, blocks, kNoiseBlock, world - blocks));
    if (req_.resume)
      say(fmt::format("  resuming {}\n", saved_.empty() ? "at the start (no checkpoint)" : saved_));
  }

  // Rank 0's divergence over the epochs losses.csv keeps (a resumed run's earlier ones).
  Divergence divergence_of(const std::string& kept) const {
    Divergence d(trainer_->initial_valid_loss());
    const Losses l = parse_losses(kept, folder_->path("losses.csv"));
    const std::vector<double> epoch = l.values("epoch"), valid = l.values("valid_loss");
    for (size_t i = 0; i < epoch.size(); ++i) d.add(int64_t(epoch[i]), valid[i]);
    return d;
  }

  // The epochs, each logged by rank 0 and checkpointed every train.checkpoint_every and last.
  // Sharded, a log line rank 0 cannot write stops every rank: at the next step (its stop answer
  // is kWriteStop) or at the next checkpoint, whichever comes first; then all exit 4.
  Trainer::End train() {
    const int64_t every = cfg_.train.checkpoint_every;
    return trainer_->run(
        [&](const EpochLog& l) {
          trainer_->results().after_epoch(l.epoch);
          if (lead_) log_epoch(l);
          if (l.finite && ((every > 0 && l.epoch % every == 0) || l.epoch == cfg_.train.epochs)) {
            check_logs_written();
            save_checkpoint();
          }
        },
        [&] { return write_error_  ? kWriteStop
                     : hooks_.stop ? hooks_.stop()
                                   : 0; });
  }

  void log_epoch(const EpochLog& l) {
    diverge_->add(l.epoch, l.valid_loss);
    try {
      folder_->append_losses(l);
      if (cfg_.theory()) folder_->append_theory(l);
    } catch (const IoError&) {
      if (comm_.world() == 1) throw;
      write_error_ = std::current_exception();
      return;
    }
    if (hooks_.on_epoch) hooks_.on_epoch(l, *diverge_);
  }

  // Collective: every rank throws when rank 0 could not write a log line (rank 0 its own error).
  void check_logs_written() {
    on_every_rank(
        comm_,
        [&] {
          if (write_error_) std::rethrow_exception(write_error_);
        },
        "could not write the run's logs");
  }

  // Collective: a checkpoint of the trainer's state now, every train.checkpoint_every epochs, last
  // and at a stop.
  void save_checkpoint() {
    const TrainerState s = trainer_->state();
    failpoint(Failpoint::SigtermAtCheckpoint);
    folder_->save_checkpoint(cfg_, s, trainer_->measure().shard(), comm_);
    on_every_rank(
        comm_, [&] { trainer_->results().on_checkpoint(*folder_, lead_); },
        "could not write beside its checkpoint");
    saved_ = position(s);
  }

  std::string last_good() const {
    return saved_.empty() ? "no checkpoint written"
                          : fmt::format("{} kept ({})", folder_->path(kCheckpointFile), saved_);
  }

  Outcome stopped() {
    Outcome o{Trainer::End::Stopped, trainer_->stopped_by(), ""};
    const TrainerState st = trainer_->state();
    if (!trainer_->finite()) {
      o.end = Trainer::End::NonFinite;
      if (lead_)
        o.message = fmt::format(
            "mmdflow: error: training went non-finite during epoch {}, stopped by {}; {}\n",
            st.epoch + 1, signal_name(o.signal), last_good());
      return o;
    }
    save_checkpoint();
    if (lead_)
      o.message = fmt::format(
          "mmdflow: stopped by {} {}; checkpoint written, continue with: mmdflow train --resume "
          "{}\n",
          signal_name(o.signal), position(st), req_.out);
    return o;
  }

  Summary summary() const {
    const TrainerState st = trainer_->state();
    const EpochLog& last = st.last;
    Summary s;
    s.initial_train_loss = trainer_->initial_train_loss();
    s.initial_valid_loss = trainer_->initial_valid_loss();
    s.epochs = last.epoch;
    if (last.epoch > 0) s.final_train_loss = last.train_loss;
    s.final_valid_loss = last.epoch > 0 ? last.valid_loss : trainer_->initial_valid_loss();
    s.best_valid_loss = st.best_valid;
    s.best_epoch = st.best_epoch;
    if (diverge_) s.max_loss_ratio = diverge_->max_ratio(), s.diverged_epoch = diverge_->epoch();
    s.seconds = st.seconds;
    s.steps = st.steps;
    s.ms_per_step = 1e3 * st.step_seconds / double(std::max<int64_t>(1, st.steps));
    s.device = trainer_->device().str();
    s.threads = cfg_.threads;
    s.processes = comm_.world();
    s.version = MMDFLOW_VERSION;
    return s;
  }

  Outcome non_finite(Summary& s) {
    Outcome o{Trainer::End::NonFinite, 0, ""};
    if (!lead_) return o;
    const EpochLog& last = trainer_->state().last;
    s.status = "non_finite";
    folder_->write_summary(s);
    o.message = fmt::format(
        "mmdflow: error: training went non-finite at epoch {} (train loss {}, valid loss {}); "
        "stopped, logs in {}; {}\n",
        last.epoch, last.train_loss, last.valid_loss, req_.out, last_good());
    return o;
  }

  // The final measure's files, its comparison, the summary.
  Outcome done(Summary& s) {
    failpoint(Failpoint::SigtermAtFinalFiles);
    Results& results = trainer_->results();
    const std::string table = results.finish(*folder_, comm_, s, lead_);
    if (!lead_) return {};
    say(table);
    s.status = "done";
    folder_->write_summary(s);
    say(fmt::format("wrote {}/{{losses.csv, {}config.yaml, summary.json, {}{}}}\n", req_.out,
                    cfg_.theory() ? "theory.csv, " : "", results.files(comm_.world()),
                    saved_.empty() ? "" : std::string(", ") + kCheckpointFile));
    return {};
  }

  RunRequest req_;
  const Config& cfg_;
  Comm& comm_;
  const RunHooks& hooks_;
  const bool lead_;
  std::optional<Trainer> trainer_;
  std::optional<RunFolder> folder_;
  std::optional<Divergence> diverge_;  // rank 0's
  std::string saved_;                  // where the checkpoint on disk stands, for messages
  std::exception_ptr write_error_;     // rank 0's failed log write, sharded
};

}  // namespace

Outcome run_training(RunRequest req, Comm& comm, const RunHooks& hooks) {
  return Run(std::move(req), comm, hooks).go();
}

std::string setup_line(const Config& c, const std::string& out, int world) {
  const std::string procs = world > 1 ? fmt::format(" x {} processes", world) : "";
  if (c.samples())
    return fmt::format(
        "mmdflow train: samples N={} toward {} | kernel {} bandwidth {} | {} flow, step {} | "
        "beta {} {} | {} steps | {} {}, {} threads{}\n  -> {}\n",
        c.student.particles,
        c.target.law == TargetLaw::File
            ? shorten(*c.target.file)
            : fmt::format("{} M={}", name_of(c.target.law), c.target.size),
        name_of(c.kernel.name), c.kernel.bandwidth, name_of(c.flow.method), c.flow.step_size,
        name_of(c.noise.schedule), c.noise.beta0, c.train.epochs, c.device.str(), name_of(c.dtype),
        c.threads, procs, out);
  const bool file = c.data.input == InputDist::File;
  const std::string teacher =
      c.teacher.file ? fmt::format("teacher {} M={}", shorten(*c.teacher.file), c.teacher.particles)
      : file         ? std::string("no teacher")
                     : fmt::format("teacher M={}", c.teacher.particles);
  std::string s = fmt::format(
      "mmdflow train: {} student N={} | d={} H={} o={} {}/{} | {} flow, step {} | "
      "beta {} {} | {} epochs, batch {} of {} | {} {}, {} threads{}\n  -> {}\n",
      teacher, c.student.particles, c.data.dim, c.model.hidden, c.model.outputs,
      name_of(c.model.activation), name_of(c.model.output), name_of(c.flow.method),
      c.flow.step_size, name_of(c.noise.schedule), c.noise.beta0, c.train.epochs, c.train.batch,
      c.data.train_size, c.device.str(), name_of(c.dtype), c.threads, procs, out);
  if (file)
    s += fmt::format("  data: {} rows of {}, validation {} rows of {}\n", c.data.train_size,
                     shorten(*c.data.train_file), c.data.valid_size, shorten(*c.data.valid_file));
  if (c.misspecified())
    s +=
        fmt::format("  misspecified: the teacher's particles have H={} {}, the student's H={} {}\n",
                    c.teacher_hidden(), name_of(c.teacher_activation()), c.model.hidden,
                    name_of(c.model.activation));
  return s;
}

}  // namespace mmdflow
