#include "src/base/errors.h"

#include <csignal>
#include <filesystem>

namespace mmdflow {

const char* signal_name(int sig) {
  return sig == SIGINT ? "SIGINT" : sig == SIGPIPE ? "SIGPIPE (output closed)" : "SIGTERM";
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
