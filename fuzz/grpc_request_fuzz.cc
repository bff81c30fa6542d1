// Fuzz target: the gRPC service's request handling below the transport: a request message of
// any of the owner's RPCs (the first byte picks Get, Set, Delete or Replicate; the rest is the
// serialized message, as the wire carries it) is parsed, translated as the server translates it
// (peer/grpc_requests.h) and handed to the real OwnerService over a real Group (one node, no
// loader), whose checks (key and value limits, TTL/deadline/expire forms, versions and their
// skew bound, answer_by) decide; the answer is mapped to a gRPC status as the server maps it.
//
// Checked beyond the sanitizers: every call completes exactly once, at once (nothing here
// waits for a peer or a loader); a refused call has a message; a Get that succeeds returns
// what the cache holds within the value limit.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "one_node.h"
#include "peer/grpc_requests.h"
#include "peer/status_map.h"
#include "proto/nexuscache.pb.h"
#include "service/owner_service.h"

namespace nexus {
namespace {

using fuzz::kMaxValueBytes;

void Check(const absl::Status& s, int* calls) {
  ++*calls;
  const grpc::Status g = ToGrpcStatus(s);
  if (s.ok() != g.ok()) std::abort();
  if (!s.ok() && s.message().empty()) {
    std::fprintf(stderr, "a refusal without a message (code %d)\n", static_cast<int>(s.code()));
    std::abort();
  }
}

}  // namespace
}  // namespace nexus

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace nexus;
  static fuzz::OneNode* const node = new fuzz::OneNode();
  OwnerService* const owner = node->owner.get();
  if (size == 0) return 0;
  const void* message = data + 1;
  const int length = static_cast<int>(size - 1);
  int calls = 0;
  switch (data[0] % 4) {
    case 0: {
      nexuscachepb::Request req;
      if (!req.ParseFromArray(message, length)) return -1;
      owner->Get(req.group(), req.key(), req.peek(), [&calls](absl::StatusOr<CachedValue> r) {
        Check(r.status(), &calls);
        if (r.ok() && r->data.size() > kMaxValueBytes) std::abort();
      });
      break;
    }
    case 1: {
      nexuscachepb::SetRequest req;
      if (!req.ParseFromArray(message, length)) return -1;
      owner->Set(OwnerSetOf(req), [&calls](absl::Status s) { Check(s, &calls); });
      break;
    }
    case 2: {
      nexuscachepb::DeleteRequest req;
      if (!req.ParseFromArray(message, length)) return -1;
      owner->Delete(
          req.group(), req.key(), [&calls](absl::Status s) { Check(s, &calls); },
          req.answer_by_ms());
      break;
    }
    case 3: {
      nexuscachepb::ReplicateRequest req;
      if (!req.ParseFromArray(message, length)) return -1;
      Check(owner->Replicate(req.group(), ReplicaOf(req)).status(), &calls);
      break;
    }
  }
  if (calls != 1) {
    std::fprintf(stderr, "a call completed %d times at once\n", calls);
    std::abort();
  }
  return 0;
}
