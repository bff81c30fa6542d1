// Fuzz target: the forwarder's answer path, from the bytes an owner (or anything posing as
// one) sends back on a forwarding connection to what the waiting call completes with: the
// ResponseDecoder the forwarder's upstream connections use (Beast's parser, the answer-size
// limit), then TakeAnswer (X-Nexus-Status, X-Nexus-Deadline-Ms, the HTTP status of an answer
// that did not come from the forwarding routes), as the upstream connections call them.
//
// Checked beyond the sanitizers: splitting the bytes into pieces (sizes from the first byte)
// yields the same answers and results, and ends the same way (a failure may show only once more
// bytes arrive); only a 1xx answer is skipped as interim; a result is OK only for an answer
// whose X-Nexus-Status reads 0; a failure has a message.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/parse.h"
#include "http/decoder.h"
#include "peer/forwarder.h"
#include "peer/http_wire.h"
#include "pieces.h"

namespace nexus {
namespace {

constexpr size_t kMaxAnswerBytes = 64 * 1024;

struct Outcome {
  std::vector<absl::StatusOr<CachedValue>> results;
  std::vector<bool> keep_alive;
  int failure = 0;          // 0 none, 1 too large, 2 bad answer
  bool incomplete = false;  // the bytes ended inside an answer
};

void Fail(const char* what) {
  std::fprintf(stderr, "%s\n", what);
  std::abort();
}

bool SameResult(const absl::StatusOr<CachedValue>& a, const absl::StatusOr<CachedValue>& b) {
  if (a.ok() != b.ok()) return false;
  if (!a.ok()) return a.status() == b.status();
  return a->data == b->data && a->deadline == b->deadline;
}

Outcome Decode(std::string_view bytes, size_t piece, const ForwardTarget& from) {
  Outcome out;
  http::ResponseDecoder decoder(kMaxAnswerBytes);
  std::string pending;
  fuzz::FeedInPieces(bytes, piece, pending, [&](std::string& in) {
    while (!in.empty()) {
      const http::ResponseDecoder::Fed fed = decoder.Feed(in);
      in.erase(0, fed.used);
      if (fed.state == http::ResponseDecoder::State::kTooLarge) {
        out.failure = 1;
        return false;
      }
      if (fed.state == http::ResponseDecoder::State::kError) {
        out.failure = 2;
        return false;
      }
      if (fed.state == http::ResponseDecoder::State::kNeedMore) break;
      const std::optional<std::string_view> field = decoder.Header(peerwire::kStatusHeader);
      int64_t code = -1;
      const bool ok_field = field.has_value() && ParseInt(*field, &code) && code == 0;
      const bool keep_alive = decoder.keep_alive();
      const int status = decoder.status();
      std::optional<absl::StatusOr<CachedValue>> r = TakeAnswer(from, decoder);
      if (!r) {
        if (status < 100 || status > 199) Fail("a final answer taken for an interim one");
      } else {
        if (r->ok() && !ok_field) Fail("an OK result from an answer without X-Nexus-Status 0");
        if (!r->ok() && r->status().message().empty()) Fail("a failure without a message");
        out.keep_alive.push_back(keep_alive);
        out.results.push_back(std::move(*r));
      }
      decoder.Next();
    }
    return true;
  });
  out.incomplete = out.failure == 0 && (!pending.empty() || decoder.got_some());
  return out;
}

}  // namespace
}  // namespace nexus

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace nexus;
  if (size == 0) return 0;
  static const ForwardTarget* const from =
      new ForwardTarget{.name = "svc2", .address = "127.0.0.1:9999"};
  const size_t piece = data[0] % 32;
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  const Outcome whole = Decode(bytes, 0, *from);
  if (piece == 0) return 0;
  const Outcome split = Decode(bytes, piece, *from);
  // (Beast may see a bad header field before the header's end has arrived, or only once it
  // has: a failure on one side may be bytes that ended inside an answer on the other.)
  const bool same_end = whole.failure == split.failure ||
                        (whole.failure == 0 && whole.incomplete) ||
                        (split.failure == 0 && split.incomplete);
  bool same = same_end && whole.keep_alive == split.keep_alive &&
              whole.results.size() == split.results.size();
  for (size_t i = 0; same && i < whole.results.size(); ++i) {
    same = SameResult(whole.results[i], split.results[i]);
  }
  if (!same) {
    std::fprintf(stderr, "splitting in pieces of %zu changed the answers\n", piece);
    std::abort();
  }
  return 0;
}
