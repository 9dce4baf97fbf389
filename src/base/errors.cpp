#include "src/base/errors.h"

#include <fmt/format.h>

#include <csignal>
#include <filesystem>

namespace mmdflow {

const char* signal_name(int sig) {
  return sig == SIGINT ? "SIGINT" : sig == SIGPIPE ? "SIGPIPE (output closed)" : "SIGTERM";
}

std::string shorten(const std::string& text) {
  std::string out;
  for (const char c : text.size() <= 60 ? text : text.substr(0, 57)) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\n')
      out += "\\n";
    else if (u < 0x20 || u == 0x7f)
      out += fmt::format("\\x{:02x}", u);
    else
      out += c;
  }
  return text.size() <= 60 ? out : out + "...";
}

int exit_code_of(const std::exception_ptr& e) {
  if (!e) return kOk;
  try {
    std::rethrow_exception(e);
  } catch (const ConfigError&) {
    return kBadInput;
  } catch (const UsageError&) {
    return kBadInput;
  } catch (const CheckpointError&) {
    return kBadInput;
  } catch (const IoError&) {
    return kIo;
  } catch (const std::filesystem::filesystem_error&) {
    return kIo;
  } catch (const PeerLost&) {
    return kLostPeer;
  } catch (const Failed& f) {
    return f.code;
  } catch (...) {
    return kError;
  }
}

}  // namespace mmdflow
