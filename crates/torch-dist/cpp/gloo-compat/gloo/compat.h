// polyalign's stand-in for the few gloo declarations that c10d/ProcessGroupGloo.hpp needs.
//
// The torch wheel exports ProcessGroupGloo from libtorch_cpu.so but ships none of gloo's
// headers. ProcessGroupGloo holds every gloo object through shared_ptr / unique_ptr, and the
// shim never constructs, copies or calls a gloo object: it only names these types so that the
// c10d header compiles. What must agree with the real library is therefore only what the
// header's inline code type-checks against:
// - `rendezvous::Store` is complete, with the virtual functions that c10d's `GlooStore`
//   overrides (same signatures), and
// - `Context` has `setTimeout`, which an inline member of ProcessGroupGloo calls.
// No member here is defined, so no gloo symbol is emitted by the shim (build.rs checks the
// object file for that). Used only when the system has no gloo headers (see build.rs).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#define GLOO_STORE_HAS_STORE_V2 1

namespace gloo {

class Context {
 public:
  void setTimeout(std::chrono::milliseconds timeout);
};

namespace transport {
class Device;
class UnboundBuffer;
} // namespace transport

namespace rendezvous {

class Store {
 public:
  virtual ~Store();
  virtual void set(const std::string& key, const std::vector<char>& data) = 0;
  virtual std::vector<char> get(const std::string& key) = 0;
  virtual void wait(const std::vector<std::string>& keys) = 0;
  virtual void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout);
  virtual bool has_v2_support();
  virtual std::vector<std::vector<char>> multi_get(const std::vector<std::string>& keys);
  virtual void multi_set(const std::vector<std::string>& keys, const std::vector<std::vector<char>>& values);
  virtual void append(const std::string& key, const std::vector<char>& data);
  virtual int64_t add(const std::string& key, int64_t value);
};

} // namespace rendezvous
} // namespace gloo
