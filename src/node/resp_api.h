// RespApi: the Redis commands of the RESP port (--resp-port), as resp::Handler: each command
// decodes its arguments, calls CacheService (the same operations, limits, auth and metrics as
// the HTTP API, counted under protocol="resp") and writes Redis's reply shape. The one place
// that maps a status to a RESP error is ReplyError (resp_api.cc). Keys live in the default
// group (--group); there is one database, 0.
//
// Commands: PING ECHO HELLO AUTH SELECT QUIT RESET CLIENT (SETNAME GETNAME ID INFO LIST
// SETINFO) COMMAND (COUNT INFO DOCS LIST) INFO DBSIZE TIME CONFIG GET, GET SET (EX PX EXAT PXAT,
// and HOT: the key is replicated to every node, the extension no plain client sends) SETEX
// PSETEX MGET MSET DEL UNLINK EXISTS TTL PTTL TYPE STRLEN. Unknown commands and wrong arity get
// Redis's texts. Expiry is Redis's: exact (no jitter), and a key set without one lives until
// evicted or deleted, or for --max-ttl when the operator set one (which also caps longer
// expiries).
//
// Thread-safety: Dispatch runs on the loops' threads, concurrently; the client registry (CLIENT
// LIST, INFO's connected_clients) is locked.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "resp/connection.h"
#include "service/cache_service.h"
#include "service/cluster_view.h"

namespace nexus {

struct RespApiOptions {
  // A key written without an expiry (or a longer one) expires after this; 0: never.
  int64_t max_ttl_ms = 0;
  uint16_t port = 0;  // INFO's tcp_port
};

class RespApi final : public resp::Handler {
 public:
  // `clock`: the wall clock expiries are fixed by and TTL reads against (a test's fake).
  RespApi(RespApiOptions options, CacheService* service, ClusterView* cluster, const Clock* clock);

  void Open(resp::Session& session) override;
  void Closed(resp::Session& session) override;
  void Dispatch(resp::Session& session, std::span<const std::string_view> args,
                resp::Reply reply) override;

  struct Command;

 private:
  struct Client {  // what CLIENT LIST shows of a connection
    std::string remote;
    std::string name;
    std::chrono::system_clock::time_point connected;
    int protocol = 2;
  };
  void Track(const resp::Session& session);

  const RespApiOptions options_;
  CacheService* const service_;
  ClusterView* const cluster_;
  const Clock* const clock_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  mutable absl::Mutex clients_mu_;
  std::map<uint64_t, Client> clients_ ABSL_GUARDED_BY(clients_mu_);

  friend struct RespCommands;
};

}  // namespace nexus
