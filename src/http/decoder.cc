#include "http/decoder.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>

#include "boost/beast/core/string.hpp"
#include "boost/beast/http/error.hpp"
#include "boost/beast/http/parser.hpp"
#include "boost/beast/http/string_body.hpp"

namespace nexus::http {

namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

// Feeds `bytes` to `parser` until it completes a message, fails or needs more; returns the
// bytes used and sets `ec` (need_more is cleared: the caller asks is_done()).
//
// The parsers are not eager: one put() parses the header, the next ones the body. Beast 1.74
// with eager(true) drops the body_limit error of a response header and goes on to reserve the
// whole Content-Length (a peer or an origin answering "Content-Length: 8888888888888880"
// ended the node in std::bad_alloc; found by fuzz/peer_answer_fuzz).
template <class Parser>
size_t Put(Parser& parser, std::string_view bytes, beast::error_code& ec) {
  size_t used = 0;
  while (used < bytes.size()) {
    const size_t n =
        parser.put(boost::asio::const_buffer(bytes.data() + used, bytes.size() - used), ec);
    used += n;
    if (ec == bhttp::error::need_more) {
      // Beast leaves an incomplete header unused until more arrives; the caller keeps it.
      ec = {};
      break;
    }
    if (ec || parser.is_done() || n == 0) break;
  }
  return used;
}

}  // namespace

struct RequestDecoder::Impl {
  Impl(size_t header, size_t body) : max_header_bytes(header), max_body_bytes(body) {}
  size_t max_header_bytes;
  size_t max_body_bytes;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser;
  beast::error_code error;
  bool continue_checked = false;

  void Start() {
    parser.emplace();
    parser->eager(false);
    parser->header_limit(static_cast<std::uint32_t>(
        std::min<size_t>(max_header_bytes, std::numeric_limits<std::uint32_t>::max())));
    parser->body_limit(static_cast<std::uint64_t>(max_body_bytes));
    error = {};
    continue_checked = false;
  }
};

RequestDecoder::RequestDecoder(size_t max_header_bytes, size_t max_body_bytes)
    : impl_(std::make_unique<Impl>(max_header_bytes, max_body_bytes)) {
  impl_->Start();
}

RequestDecoder::~RequestDecoder() = default;

RequestDecoder::Fed RequestDecoder::Feed(std::string_view bytes) {
  beast::error_code ec;
  const size_t used = Put(*impl_->parser, bytes, ec);
  if (ec) {
    impl_->error = ec;
    return {State::kError, used};
  }
  return {impl_->parser->is_done() ? State::kRequest : State::kNeedMore, used};
}

bool RequestDecoder::TakeContinue() {
  auto& parser = *impl_->parser;
  if (impl_->continue_checked || !parser.is_header_done() || parser.is_done()) return false;
  impl_->continue_checked = true;
  const auto& req = parser.get();
  return req.version() >= 11 && beast::iequals(req[bhttp::field::expect], "100-continue");
}

bool RequestDecoder::got_some() const { return impl_->parser->got_some(); }

Request RequestDecoder::Take() {
  auto msg = impl_->parser->release();
  version_ = msg.version();
  Request req;
  req.method = std::string(msg.method_string());
  req.target = std::string(msg.target());
  req.headers.reserve(std::distance(msg.begin(), msg.end()));
  for (const auto& field : msg) {
    req.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  req.body = std::move(msg.body());
  req.keep_alive = msg.keep_alive();
  DecodeRequest(req);
  return req;
}

Response RequestDecoder::Rejection() const {
  if (impl_->error == bhttp::error::body_limit) return Text(413, "request body too large\n");
  if (impl_->error == bhttp::error::header_limit) return Text(431, "request header too large\n");
  return Text(400, "bad request\n");
}

std::string RequestDecoder::error_text() const { return impl_->error.message(); }

void RequestDecoder::Reset() {
  impl_->Start();
  version_ = 11;
}

struct ResponseDecoder::Impl {
  explicit Impl(size_t body) : max_body_bytes(body) {}
  size_t max_body_bytes;
  std::optional<bhttp::response_parser<bhttp::string_body>> parser;
  beast::error_code error;

  void Start() {
    parser.emplace();
    parser->eager(false);
    parser->body_limit(static_cast<std::uint64_t>(max_body_bytes));
    error = {};
  }
};

ResponseDecoder::ResponseDecoder(size_t max_body_bytes)
    : impl_(std::make_unique<Impl>(max_body_bytes)) {
  impl_->Start();
}

ResponseDecoder::~ResponseDecoder() = default;

ResponseDecoder::Fed ResponseDecoder::Feed(std::string_view bytes) {
  beast::error_code ec;
  const size_t used = Put(*impl_->parser, bytes, ec);
  if (ec) {
    impl_->error = ec;
    return {ec == bhttp::error::body_limit ? State::kTooLarge : State::kError, used};
  }
  return {impl_->parser->is_done() ? State::kResponse : State::kNeedMore, used};
}

bool ResponseDecoder::got_some() const { return impl_->parser->got_some(); }

int ResponseDecoder::status() const { return static_cast<int>(impl_->parser->get().result_int()); }

bool ResponseDecoder::keep_alive() const { return impl_->parser->get().keep_alive(); }

std::optional<std::string_view> ResponseDecoder::Header(std::string_view name) const {
  const auto& msg = impl_->parser->get();
  const auto it = msg.find(beast::string_view(name.data(), name.size()));
  if (it == msg.end()) return std::nullopt;
  return std::string_view(it->value().data(), it->value().size());
}

std::string ResponseDecoder::TakeBody() { return std::move(impl_->parser->get().body()); }

std::string ResponseDecoder::error_text() const { return impl_->error.message(); }

void ResponseDecoder::Next() { impl_->Start(); }

}  // namespace nexus::http
