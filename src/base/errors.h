// Exit codes and the error types behind them: the CLI prints one line, "mmdflow: error: <what>",
// and exits with the code of the error's type (src/cli/commands.cpp).
#pragma once
#include <exception>
#include <stdexcept>
#include <string>

namespace mmdflow {

// 130 and 143 follow the shell's 128 + signal number.
enum Exit : int {
  kOk = 0,
  kError = 1,          // anything else
  kBadInput = 2,       // a bad config, option, or file read back (checkpoint, weights)
  kNonFinite = 3,      // the run diverged
  kIo = 4,             // a file could not be written (disk full, folder not writable)
  kLostPeer = 5,       // a process of a sharded run was lost, or a collective timed out
  kInterrupted = 130,  // SIGINT: stopped at a step boundary, checkpoint written
  kTerminated = 143,   // SIGTERM: the same
};

// The name of a signal that stops a run, for messages: "SIGINT", "SIGTERM",
// "SIGPIPE (output closed)".
const char* signal_name(int sig);

// A value for messages: cut to 60 characters, line breaks and control bytes written as \n, \xNN
// (a name read from a file cannot break or forge the one-line error).
std::string shorten(const std::string& text);

// A bad configuration key or value (exit 2).
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A bad command-line option (exit 2).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A file read back that cannot be used: foreign, truncated, corrupt, or not this run's (exit 2).
struct CheckpointError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A process of a sharded run was lost, or a collective did not complete in time (exit 5).
struct PeerLost : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Another process of a sharded run failed with `code`: this one stops with it too.
struct Failed : std::runtime_error {
  Failed(const std::string& what, int code) : std::runtime_error(what), code(code) {}
  int code;
};

// A run's file could not be written: disk full, file too large, folder not writable (exit 4).
struct IoError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The exit code of an error: by its type above (Failed: its code;
// std::filesystem::filesystem_error: kIo; anything else: kError). Null: kOk.
int exit_code_of(const std::exception_ptr& e);

}  // namespace mmdflow
