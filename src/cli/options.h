// What the commands share on the command line: option parsing, the config from --config and
// --set, and the one-line error every command ends with.
#pragma once
#define CXXOPTS_VECTOR_DELIMITER '\x1f'  // --set values may hold commas
#include <cxxopts.hpp>
#include <optional>
#include <string>

#include "src/comm/comm.h"
#include "src/train/config.h"

namespace mmdflow {

// --config, --set, --device, --threads, --help.
void add_config_options(cxxopts::Options& o);
// Parses argv; nullopt when --help was asked (and printed). Throws UsageError.
std::optional<cxxopts::ParseResult> parse(cxxopts::Options& o, int argc, char** argv);
// --config (else `fallback`; empty: the defaults) with --set, --device and --threads applied.
Config config_from(const cxxopts::ParseResult& r, const std::string& fallback = "");
// An integer option within [lo, hi], or UsageError naming it.
int64_t int_option(const cxxopts::ParseResult& r, const std::string& name, int64_t lo, int64_t hi);

// This process's place in its launcher's job (src/comm/launch.h); from here on, the messages of a
// sharded run's process R start with "rank R: ".
Launch launch_of_process();
// The processes of `launch` connected for cfg's dist section and device (a single process when
// its world is 1); `job` says what they run (its command and folder: job_of), and a process
// of another job at MASTER_PORT is turned away. SIGINT or SIGTERM while they meet ends this
// process at once (130, 143). When another rank finds a peer lost (this one may be blocked in a
// collective with a rank that stopped), this process ends with exit 5 and the lost peer's
// one-line error.
std::unique_ptr<Comm> comm_of(const Launch& launch, const Config& cfg, const std::string& job);
// "train --out /abs/folder": a command and the folder it works in, whatever its spelling
// (relative, with . or .., through links); the command alone when `dir` is empty.
std::string job_of(const std::string& command, const std::string& dir);

// A command's result (compare's table, sweep --plan's lines) on stdout; throws IoError (exit 4)
// when it cannot be written whole, e.g. on a full disk.
void print_result(const std::string& text);

// Text for stderr. A write that fails (stderr on a full disk) is ignored: fmt::print would throw,
// and the process would end by abort instead of its exit code.
void print_message(const std::string& text);

// The one line a failure gets on stderr: "mmdflow: [rank R: ]error: <what>".
void print_error(const std::string& what);

}  // namespace mmdflow
