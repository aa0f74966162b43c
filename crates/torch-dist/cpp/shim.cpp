// The C interface of torch-dist: c10d's TCPStore and ProcessGroupGloo, as libtorch exports
// them, behind plain functions that Rust can call. No collective logic lives here: each
// function forwards to c10d and waits for its Work. Errors never cross the boundary as C++
// exceptions: each function catches, and returns the message through `err` (malloc'd; the
// caller frees it with pd_free).
#include <cstdlib>
#include <cstring>
#include <string>

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

namespace {

char* copy_message(const char* text) {
  size_t n = std::strlen(text);
  char* out = static_cast<char*>(std::malloc(n + 1));
  if (out != nullptr) {
    std::memcpy(out, text, n + 1);
  }
  return out;
}

template <typename F>
void guarded(char** err, F&& f) {
  *err = nullptr;
  try {
    f();
  } catch (const c10::Error& e) {
    *err = copy_message(e.what_without_backtrace());
  } catch (const std::exception& e) {
    *err = copy_message(e.what());
  } catch (...) {
    *err = copy_message("unknown C++ exception");
  }
}

c10d::ReduceOp reduce_op(int op) {
  switch (op) {
    case 0:
      return c10d::ReduceOp::SUM;
    case 1:
      return c10d::ReduceOp::MAX;
    case 2:
      return c10d::ReduceOp::MIN;
    case 3:
      return c10d::ReduceOp::PRODUCT;
    default:
      throw std::invalid_argument("unknown reduce op code " + std::to_string(op));
  }
}

}  // namespace

struct pd_store {
  c10::intrusive_ptr<c10d::Store> store;
};

struct pd_group {
  c10::intrusive_ptr<c10d::Backend> backend;
};

extern "C" {

void pd_free(void* p) { std::free(p); }

pd_store* pd_tcp_store_new(const char* host, uint16_t port, int64_t world_size, bool is_server,
                           int64_t timeout_ms, char** err) {
  pd_store* out = nullptr;
  guarded(err, [&] {
    c10d::TCPStoreOptions opts;
    opts.port = port;
    opts.isServer = is_server;
    opts.numWorkers = static_cast<size_t>(world_size);
    opts.waitWorkers = true;
    opts.timeout = std::chrono::milliseconds(timeout_ms);
    out = new pd_store{c10::make_intrusive<c10d::TCPStore>(std::string(host), opts)};
  });
  return out;
}

void pd_store_free(pd_store* s) { delete s; }

void pd_store_set(pd_store* s, const char* key, const uint8_t* data, size_t len, char** err) {
  guarded(err, [&] { s->store->set(std::string(key), std::vector<uint8_t>(data, data + len)); });
}

// The value of `key`, waiting for it up to the store's timeout: malloc'd into *out (free it
// with pd_free), its length returned.
size_t pd_store_get(pd_store* s, const char* key, uint8_t** out, char** err) {
  size_t len = 0;
  *out = nullptr;
  guarded(err, [&] {
    std::vector<uint8_t> value = s->store->get(std::string(key));
    len = value.size();
    *out = static_cast<uint8_t*>(std::malloc(len == 0 ? 1 : len));
    if (*out == nullptr) {
      throw std::bad_alloc();
    }
    std::memcpy(*out, value.data(), len);
  });
  return len;
}

int64_t pd_store_add(pd_store* s, const char* key, int64_t value, char** err) {
  int64_t out = 0;
  guarded(err, [&] { out = s->store->add(std::string(key), value); });
  return out;
}

// A Gloo process group over `s`. The transport device binds to `interface` when given, else to
// `hostname` when given, else to this machine's resolved hostname (loopback as a fallback).
pd_group* pd_gloo_new(pd_store* s, int rank, int size, int64_t timeout_ms, const char* interface,
                      const char* hostname, char** err) {
  pd_group* out = nullptr;
  guarded(err, [&] {
    auto options = c10d::ProcessGroupGloo::Options::create(std::chrono::milliseconds(timeout_ms));
    if (interface != nullptr) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface));
    } else if (hostname != nullptr) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(hostname));
    } else {
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    out = new pd_group{c10::make_intrusive<c10d::ProcessGroupGloo>(s->store, rank, size, options)};
  });
  return out;
}

void pd_group_free(pd_group* g) { delete g; }

void pd_all_reduce(pd_group* g, at::Tensor* t, int op, char** err) {
  guarded(err, [&] {
    std::vector<at::Tensor> tensors{*t};
    c10d::AllreduceOptions opts;
    opts.reduceOp = reduce_op(op);
    g->backend->allreduce(tensors, opts)->wait();
  });
}

void pd_broadcast(pd_group* g, at::Tensor* t, int root, char** err) {
  guarded(err, [&] {
    std::vector<at::Tensor> tensors{*t};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    g->backend->broadcast(tensors, opts)->wait();
  });
}

// `output` (world_size x numel(input), contiguous) receives every rank's `input` in rank order.
void pd_all_gather(pd_group* g, at::Tensor* output, at::Tensor* input, char** err) {
  guarded(err, [&] { g->backend->_allgather_base(*output, *input)->wait(); });
}

// `output` receives the reduction over ranks of this rank's slice of `input`
// (world_size x numel(output)).
void pd_reduce_scatter(pd_group* g, at::Tensor* output, at::Tensor* input, int op, char** err) {
  guarded(err, [&] {
    c10d::ReduceScatterOptions opts;
    opts.reduceOp = reduce_op(op);
    g->backend->_reduce_scatter_base(*output, *input, opts)->wait();
  });
}

void pd_barrier(pd_group* g, char** err) {
  guarded(err, [&] { g->backend->barrier()->wait(); });
}

}  // extern "C"
