#include "node/resp_api.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/ascii.h"

namespace nexus {
namespace {

using resp::Reply;
using resp::Session;
using resp::Writer;
using Args = std::span<const std::string_view>;

// The Redis version whose commands and replies this port follows (HELLO's and INFO's
// redis_version: clients that check it see what they may use).
constexpr char kRedisVersion[] = "7.0.0";
constexpr char kNexusVersion[] = "0.1.0";

struct RespSession final : resp::SessionData {
  auth::Identity identity;
  std::string name;
};

RespSession& Data(Session& session) { return static_cast<RespSession&>(*session.data); }
const RespSession& Data(const Session& session) {
  return static_cast<const RespSession&>(*session.data);
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The one place a status becomes a RESP error: Redis's codes where Redis has one.
void ReplyError(Writer& out, const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnauthenticated:
      // (Never "invalid token": AUTH keeps only valid identities.) Redis's text first, clients
      // look at the code, then which role is needed.
      return out.Error(
          absl::StrCat("NOAUTH Authentication required (", status.message(), ": AUTH <token>)."));
    case absl::StatusCode::kPermissionDenied:
      return out.Error(absl::StrCat("NOPERM ", status.message()));
    default:
      return out.Error(absl::StrCat("ERR ", status.message()));
  }
}

void WrongArity(Writer& out, std::string_view name) {
  out.Error(absl::StrCat("ERR wrong number of arguments for '", Lower(name), "' command"));
}

}  // namespace

// What a command's function gets.
struct Ctx {
  RespApi* api;
  Session& session;
  Args args;
  Reply reply;
  Caller caller() const { return {Protocol::kResp, Data(session).identity}; }
  Writer& out() { return reply.out(); }
};

struct RespApi::Command {
  const char* name;
  int arity;  // Redis's: N exactly, -N at least N (the name counts)
  std::vector<const char*> flags;
  int first_key, last_key, step;
  const char* group;
  const char* summary;
  void (*run)(Ctx&);
};

struct RespCommands {
  static const std::vector<RespApi::Command>& All();
  static const RespApi::Command* Find(std::string_view name);

  // The expiry of a write, from its options or the default (Redis's: none), capped by
  // --max-ttl. nullopt: the deadline already passed (the write is a delete).
  static std::optional<Expiry> ExpiryOf(const RespApi& api, std::optional<UnixMillis> at) {
    const UnixMillis now = api.clock_->NowMillis();
    UnixMillis deadline = at.value_or(kNoDeadline);
    if (api.options_.max_ttl_ms > 0) deadline = std::min(deadline, now + api.options_.max_ttl_ms);
    if (deadline <= now) return std::nullopt;
    return Expiry::At(deadline);
  }

  // Writes `value` with `expiry`, replying +OK or the error.
  static void Write(Ctx& c, std::string_view key, std::string_view value,
                    std::optional<Expiry> expiry, bool hot) {
    auto ok_or_error = [reply = std::move(c.reply)](absl::Status s) mutable {
      if (s.ok())
        reply.out().Ok();
      else
        ReplyError(reply.out(), s);
      reply.Send();
    };
    // Without an expiry left, Redis stores the key and it is gone at once: a delete.
    if (!expiry) return c.api->service_->Delete(c.caller(), {}, key, std::move(ok_or_error));
    c.api->service_->Set(c.caller(), {}, key, value, *expiry, hot, std::move(ok_or_error));
  }

  // Looks `key` up and answers with `encode(value or nullptr)`, or the error.
  template <typename Encode>
  static void Lookup(Ctx& c, std::string_view key, Encode encode) {
    c.api->service_->Get(
        c.caller(), {}, key,
        [reply = std::move(c.reply), encode](absl::StatusOr<CachedValue> r) mutable {
          if (r.ok()) {
            encode(reply.out(), &*r);
          } else if (absl::IsNotFound(r.status())) {
            encode(reply.out(), nullptr);
          } else {
            ReplyError(reply.out(), r.status());
          }
          reply.Send();
        });
  }

  // Runs `one(key index, done)` for keys args[first], args[first+step]... in parallel and
  // answers with `finish(out, results)` once all are done, in key order.
  template <typename T, typename One, typename Finish>
  static void FanOut(Ctx& c, size_t first, size_t step, One one, Finish finish) {
    struct State {
      std::vector<T> results;
      std::atomic<size_t> remaining;
      Reply reply;
      Finish finish;
      State(size_t n, Reply r, Finish f)
          : results(n), remaining(n), reply(std::move(r)), finish(std::move(f)) {}
    };
    const size_t n = (c.args.size() - first) / step;
    auto state = std::make_shared<State>(n, std::move(c.reply), std::move(finish));
    for (size_t i = 0; i < n; ++i) {
      one(first + i * step, [state, i](T result) {
        state->results[i] = std::move(result);
        if (state->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) {
          state->finish(state->reply.out(), state->results);
          state->reply.Send();
        }
      });
    }
  }

  static void Ping(Ctx& c) {
    if (c.args.size() > 2) return WrongArity(c.out(), "ping");
    if (c.args.size() == 2)
      c.out().Bulk(c.args[1]);
    else
      c.out().Simple("PONG");
    c.reply.Send();
  }
  static void Echo(Ctx& c) {
    c.out().Bulk(c.args[1]);
    c.reply.Send();
  }
  static void Quit(Ctx& c) {
    c.out().Ok();
    c.reply.Send(/*close=*/true);
  }
  static void Select(Ctx& c) {
    int64_t db = 0;
    if (!resp::ParseInteger(c.args[1], &db))
      c.out().Error("ERR value is not an integer or out of range");
    else if (db != 0)
      c.out().Error("ERR DB index is out of range");
    else
      c.out().Ok();
    c.reply.Send();
  }
  // AUTH [username] token: the token of --auth-token-file (any username).
  static bool Authenticate(Ctx& c, std::string_view token) {
    if (!c.api->service_->auth_enabled()) {
      c.out().Error(
          "ERR AUTH <password> called without any password configured for the default user. "
          "Are you sure your configuration is correct?");
      return false;
    }
    const auth::Identity identity = c.api->service_->Identify(token);
    if (identity.state != auth::Identity::State::kValid) {
      c.out().Error("WRONGPASS invalid username-password pair or user is disabled.");
      return false;
    }
    Data(c.session).identity = identity;
    return true;
  }
  static void Auth(Ctx& c) {
    if (c.args.size() > 3) {
      c.out().Error("ERR syntax error");
    } else if (Authenticate(c, c.args.back())) {
      c.out().Ok();
    }
    c.reply.Send();
  }
  // HELLO [protover [AUTH username password] [SETNAME clientname]]
  static void Hello(Ctx& c) {
    int protocol = c.session.protocol;
    if (c.args.size() >= 2) {
      int64_t v = 0;
      if (!resp::ParseInteger(c.args[1], &v)) {
        c.out().Error("ERR Protocol version is not an integer or out of range");
        return c.reply.Send();
      }
      if (v != 2 && v != 3) {
        c.out().Error("NOPROTO unsupported protocol version");
        return c.reply.Send();
      }
      protocol = static_cast<int>(v);
    }
    std::optional<std::string> name;
    for (size_t i = 2; i < c.args.size(); ++i) {
      if (EqualsIgnoreCase(c.args[i], "AUTH") && i + 2 < c.args.size()) {
        if (!Authenticate(c, c.args[i + 2])) return c.reply.Send();
        i += 2;
      } else if (EqualsIgnoreCase(c.args[i], "SETNAME") && i + 1 < c.args.size()) {
        name = std::string(c.args[++i]);
      } else {
        c.out().Error(
            absl::StrCat("ERR Syntax error in HELLO option '", std::string(c.args[i]), "'"));
        return c.reply.Send();
      }
    }
    if (name) Data(c.session).name = *name;
    c.session.protocol = protocol;
    c.api->Track(c.session);
    Writer& w = c.out();
    w.set_protocol(protocol);
    w.Map(7);
    w.Bulk("server"), w.Bulk("redis");
    w.Bulk("version"), w.Bulk(kRedisVersion);
    w.Bulk("proto"), w.Integer(protocol);
    w.Bulk("id"), w.Integer(static_cast<int64_t>(c.session.id));
    w.Bulk("mode"), w.Bulk("standalone");
    w.Bulk("role"), w.Bulk("master");
    w.Bulk("modules"), w.Array(0);
    c.reply.Send();
  }
  static void Reset(Ctx& c) {
    c.session.protocol = 2;
    Data(c.session) = RespSession{};
    Data(c.session).identity = c.api->service_->Identify(std::nullopt);
    c.api->Track(c.session);
    c.out().set_protocol(2);
    c.out().Simple("RESET");
    c.reply.Send();
  }
  static std::string ClientLine(uint64_t id, const RespApi::Client& client) {
    const auto age = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now() - client.connected)
                         .count();
    return absl::StrCat("id=", id, " addr=", client.remote, " name=", client.name, " age=", age,
                        " db=0 resp=", client.protocol, "\n");
  }
  static void Client(Ctx& c) {
    const std::string sub = Lower(c.args[1]);
    Writer& w = c.out();
    if (sub == "setname" && c.args.size() == 3) {
      const std::string_view name = c.args[2];
      if (std::any_of(name.begin(), name.end(), [](char ch) { return ch <= ' ' || ch > '~'; })) {
        w.Error("ERR Client names cannot contain spaces, newlines or special characters.");
      } else {
        Data(c.session).name = std::string(name);
        c.api->Track(c.session);
        w.Ok();
      }
    } else if (sub == "getname" && c.args.size() == 2) {
      if (Data(c.session).name.empty())
        w.Null();
      else
        w.Bulk(Data(c.session).name);
    } else if (sub == "id" && c.args.size() == 2) {
      w.Integer(static_cast<int64_t>(c.session.id));
    } else if (sub == "info" && c.args.size() == 2) {
      w.Verbatim(ClientLine(c.session.id, {c.session.remote, Data(c.session).name,
                                           c.session.connected, c.session.protocol}));
    } else if (sub == "list" && c.args.size() == 2) {
      std::string text;
      {
        absl::MutexLock lock(&c.api->clients_mu_);
        for (const auto& [id, client] : c.api->clients_) text += ClientLine(id, client);
      }
      w.Verbatim(text);
    } else if (sub == "setinfo" && c.args.size() == 4) {
      w.Ok();  // (client libraries announce their name and version; nothing to keep)
    } else {
      w.Error(absl::StrCat("ERR unknown subcommand or wrong number of arguments for '",
                           std::string(c.args[1]), "'. Try CLIENT HELP."));
    }
    c.reply.Send();
  }
  static void CommandInfo(Writer& w, const RespApi::Command& cmd) {
    w.Array(6);
    w.Bulk(cmd.name);
    w.Integer(cmd.arity);
    w.Set(cmd.flags.size());
    for (const char* f : cmd.flags) w.Simple(f);
    w.Integer(cmd.first_key);
    w.Integer(cmd.last_key);
    w.Integer(cmd.step);
  }
  static void CommandDoc(Writer& w, const RespApi::Command& cmd) {
    w.Bulk(cmd.name);
    w.Map(3);
    w.Bulk("summary"), w.Bulk(cmd.summary);
    w.Bulk("since"), w.Bulk("1.0.0");
    w.Bulk("group"), w.Bulk(cmd.group);
  }
  // COMMAND [COUNT | LIST | INFO name... | DOCS [name...]]
  static void Command(Ctx& c) {
    Writer& w = c.out();
    const auto& all = All();
    const std::string sub = c.args.size() > 1 ? Lower(c.args[1]) : "";
    if (sub.empty()) {
      w.Array(all.size());
      for (const auto& cmd : all) CommandInfo(w, cmd);
    } else if (sub == "count" && c.args.size() == 2) {
      w.Integer(static_cast<int64_t>(all.size()));
    } else if (sub == "list" && c.args.size() == 2) {
      w.Array(all.size());
      for (const auto& cmd : all) w.Bulk(cmd.name);
    } else if (sub == "info") {
      w.Array(c.args.size() - 2);
      for (size_t i = 2; i < c.args.size(); ++i) {
        if (const RespApi::Command* cmd = Find(c.args[i]); cmd != nullptr)
          CommandInfo(w, *cmd);
        else
          w.NullArray();
      }
    } else if (sub == "docs") {
      std::vector<const RespApi::Command*> chosen;
      if (c.args.size() == 2) {
        for (const auto& cmd : all) chosen.push_back(&cmd);
      } else {
        for (size_t i = 2; i < c.args.size(); ++i) {
          if (const RespApi::Command* cmd = Find(c.args[i]); cmd != nullptr) chosen.push_back(cmd);
        }
      }
      w.Map(chosen.size());
      for (const RespApi::Command* cmd : chosen) CommandDoc(w, *cmd);
    } else {
      w.Error(absl::StrCat("ERR unknown subcommand or wrong number of arguments for '",
                           std::string(c.args[1]), "'. Try COMMAND HELP."));
    }
    c.reply.Send();
  }
  static void Config(Ctx& c) {
    // Only CONFIG GET, for tools that probe it (redis-benchmark asks for "save" and
    // "appendonly"), with what is true of this server: nothing is persisted, one database.
    // Parameters are named exactly (no glob patterns); others match nothing.
    if (!EqualsIgnoreCase(c.args[1], "get") || c.args.size() < 3) {
      c.out().Error(absl::StrCat("ERR unknown subcommand or wrong number of arguments for '",
                                 std::string(c.args[1]), "'. Try CONFIG HELP."));
      return c.reply.Send();
    }
    static constexpr std::pair<std::string_view, std::string_view> kKnown[] = {
        {"save", ""}, {"appendonly", "no"}, {"databases", "1"}};
    std::vector<std::pair<std::string_view, std::string_view>> found;
    for (size_t i = 2; i < c.args.size(); ++i) {
      const std::string name = Lower(c.args[i]);
      for (const auto& known : kKnown) {
        if (known.first == name && std::find(found.begin(), found.end(), known) == found.end()) {
          found.push_back(known);
        }
      }
    }
    c.out().Map(found.size());
    for (const auto& [name, value] : found) {
      c.out().Bulk(name);
      c.out().Bulk(value);
    }
    c.reply.Send();
  }
  static void Time(Ctx& c) {
    const int64_t us = std::chrono::duration_cast<std::chrono::microseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
    c.out().Array(2);
    c.out().Bulk(std::to_string(us / 1'000'000));
    c.out().Bulk(std::to_string(us % 1'000'000));
    c.reply.Send();
  }
  static uint64_t LocalKeys(const RespApi& api, CacheStats* main = nullptr,
                            GroupStats* all = nullptr) {
    absl::StatusOr<Group*> g = api.service_->FindGroup({});
    if (!g.ok()) return 0;
    const GroupStats stats = (*g)->stats();
    if (main != nullptr) *main = stats.main;
    if (all != nullptr) *all = stats;
    return stats.main.items - stats.main.tombstones;  // (deleted keys are remembered a while)
  }
  static void DbSize(Ctx& c) {
    if (absl::Status s = c.api->service_->Authorize(c.caller(), CacheService::Access::kRead);
        !s.ok()) {
      ReplyError(c.out(), s);
    } else {
      c.out().Integer(static_cast<int64_t>(LocalKeys(*c.api)));
    }
    c.reply.Send();
  }
  static void Info(Ctx& c) {
    if (absl::Status s = c.api->service_->Authorize(c.caller(), CacheService::Access::kRead);
        !s.ok()) {
      ReplyError(c.out(), s);
      return c.reply.Send();
    }
    std::vector<std::string> wanted;
    for (size_t i = 1; i < c.args.size(); ++i) wanted.push_back(Lower(c.args[i]));
    auto want = [&](std::string_view section) {
      return wanted.empty() || std::find(wanted.begin(), wanted.end(), section) != wanted.end() ||
             std::find(wanted.begin(), wanted.end(), "all") != wanted.end() ||
             std::find(wanted.begin(), wanted.end(), "everything") != wanted.end() ||
             std::find(wanted.begin(), wanted.end(), "default") != wanted.end();
    };
    GroupStats stats;
    const uint64_t keys = LocalKeys(*c.api, nullptr, &stats);
    size_t clients = 0;
    {
      absl::MutexLock lock(&c.api->clients_mu_);
      clients = c.api->clients_.size();
    }
    const auto uptime = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::steady_clock::now() - c.api->started_)
                            .count();
    std::string text;
    if (want("server")) {
      absl::StrAppend(&text, "# Server\r\nredis_version:", kRedisVersion,
                      "\r\nnexuscache_version:", kNexusVersion, "\r\nredis_mode:standalone\r\n",
                      "process_id:", getpid(), "\r\ntcp_port:", c.api->options_.port,
                      "\r\nuptime_in_seconds:", uptime, "\r\n\r\n");
    }
    if (want("clients")) {
      absl::StrAppend(&text, "# Clients\r\nconnected_clients:", clients, "\r\n\r\n");
    }
    if (want("memory")) {
      absl::StrAppend(&text, "# Memory\r\nused_memory:", stats.main.bytes + stats.hot.bytes,
                      "\r\nnexuscache_main_cache_bytes:", stats.main.bytes,
                      "\r\nnexuscache_hot_cache_bytes:", stats.hot.bytes, "\r\n\r\n");
    }
    if (want("stats")) {
      absl::StrAppend(&text, "# Stats\r\nkeyspace_hits:", stats.hits,
                      "\r\nkeyspace_misses:", stats.misses,
                      "\r\nevicted_keys:", stats.main.evictions + stats.hot.evictions,
                      "\r\nexpired_keys:", stats.main.expirations + stats.hot.expirations,
                      "\r\nnexuscache_peer_gets:", stats.peer_gets,
                      "\r\nnexuscache_loads:", stats.loads, "\r\n\r\n");
    }
    if (want("replication")) {
      absl::StrAppend(&text, "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n\r\n");
    }
    if (want("cluster")) {
      absl::StrAppend(&text,
                      "# Cluster\r\ncluster_enabled:0\r\nnexuscache_self:", c.api->cluster_->self(),
                      "\r\nnexuscache_members:", c.api->cluster_->Members().size(),
                      "\r\nnexuscache_ring_generation:", c.api->cluster_->generation(), "\r\n\r\n");
    }
    if (want("keyspace")) {
      absl::StrAppend(&text, "# Keyspace\r\n");
      if (keys > 0) absl::StrAppend(&text, "db0:keys=", keys, ",expires=0,avg_ttl=0\r\n");
    }
    c.out().Verbatim(text);
    c.reply.Send();
  }

  static void Get(Ctx& c) {
    Lookup(c, c.args[1], [](Writer& w, const CachedValue* v) {
      if (v != nullptr)
        w.Bulk(v->data);
      else
        w.Null();
    });
  }
  // SET key value [EX s | PX ms | EXAT unix-s | PXAT unix-ms] [HOT]
  static void Set(Ctx& c) {
    std::optional<UnixMillis> at;
    bool hot = false;
    bool expiry_given = false;
    for (size_t i = 3; i < c.args.size(); ++i) {
      const std::string opt = Lower(c.args[i]);
      if (opt == "hot") {
        hot = true;
        continue;
      }
      if (opt == "nx" || opt == "xx" || opt == "get" || opt == "keepttl") {
        c.out().Error(absl::StrCat("ERR SET ", std::string(c.args[i]), " is not supported yet"));
        return c.reply.Send();
      }
      if ((opt == "ex" || opt == "px" || opt == "exat" || opt == "pxat") && !expiry_given &&
          i + 1 < c.args.size()) {
        expiry_given = true;
        int64_t n = 0;
        if (!resp::ParseInteger(c.args[++i], &n)) {
          c.out().Error("ERR value is not an integer or out of range");
          return c.reply.Send();
        }
        const bool seconds = opt == "ex" || opt == "exat";
        if (n <= 0 || (seconds && n > kNoDeadline / 1000) || (!seconds && n > kNoDeadline / 2)) {
          c.out().Error("ERR invalid expire time in 'set' command");
          return c.reply.Send();
        }
        const int64_t ms = seconds ? n * 1000 : n;
        at = (opt == "ex" || opt == "px") ? c.api->clock_->NowMillis() + ms : ms;
        continue;
      }
      c.out().Error("ERR syntax error");
      return c.reply.Send();
    }
    Write(c, c.args[1], c.args[2], ExpiryOf(*c.api, at), hot);
  }
  // SETEX key seconds value / PSETEX key milliseconds value
  static void SetEx(Ctx& c, bool seconds) {
    int64_t n = 0;
    if (!resp::ParseInteger(c.args[2], &n)) {
      c.out().Error("ERR value is not an integer or out of range");
      return c.reply.Send();
    }
    if (n <= 0 || n > kNoDeadline / 2000) {
      c.out().Error(
          absl::StrCat("ERR invalid expire time in '", seconds ? "setex" : "psetex", "' command"));
      return c.reply.Send();
    }
    Write(c, c.args[1], c.args[3],
          ExpiryOf(*c.api, c.api->clock_->NowMillis() + (seconds ? n * 1000 : n)), false);
  }
  static void MGet(Ctx& c) {
    RespApi* api = c.api;
    const Caller caller = c.caller();
    FanOut<std::optional<std::string>>(
        c, 1, 1,
        [&](size_t i, auto done) {
          api->service_->Get(
              caller, {}, c.args[i],
              [done = std::move(done)](absl::StatusOr<CachedValue> r) mutable {
                // Like Redis: anything but a value (a miss, an error) is nil.
                done(r.ok() ? std::optional<std::string>(std::move(r->data)) : std::nullopt);
              });
        },
        [](Writer& w, std::vector<std::optional<std::string>>& values) {
          w.Array(values.size());
          for (const auto& v : values) {
            if (v)
              w.Bulk(*v);
            else
              w.Null();
          }
        });
  }
  static void MSet(Ctx& c) {
    if (c.args.size() % 2 == 0) return WrongArity(c.out(), "mset"), c.reply.Send();
    RespApi* api = c.api;
    const Caller caller = c.caller();
    const std::optional<Expiry> expiry = ExpiryOf(*api, std::nullopt);
    FanOut<absl::Status>(
        c, 1, 2,
        [&](size_t i, auto done) {
          api->service_->Set(caller, {}, c.args[i], c.args[i + 1], *expiry, false, std::move(done));
        },
        [](Writer& w, std::vector<absl::Status>& results) {
          for (const absl::Status& s : results) {
            if (!s.ok()) return ReplyError(w, s);
          }
          w.Ok();
        });
  }
  // The reply of a command that counts keys (DEL, EXISTS): how many results are true, or the
  // first error.
  static void CountTrue(Writer& w, std::vector<absl::StatusOr<bool>>& results) {
    int64_t n = 0;
    for (const auto& r : results) {
      if (!r.ok()) return ReplyError(w, r.status());
      n += *r ? 1 : 0;
    }
    w.Integer(n);
  }
  // DEL/UNLINK key...: the number of keys that existed. Each key is looked up, then deleted
  // (the count is not atomic with the delete: a write between the two is not counted).
  static void Del(Ctx& c) {
    RespApi* api = c.api;
    const Caller caller = c.caller();
    FanOut<absl::StatusOr<bool>>(
        c, 1, 1,
        [&](size_t i, auto done) {
          std::string key(c.args[i]);
          api->service_->Get(
              caller, {}, key,
              [api, caller, key, done = std::move(done)](absl::StatusOr<CachedValue> r) mutable {
                if (!r.ok() && !absl::IsNotFound(r.status())) return done(r.status());
                const bool existed = r.ok();
                api->service_->Delete(caller, {}, key,
                                      [existed, done = std::move(done)](absl::Status s) mutable {
                                        if (!s.ok()) return done(std::move(s));
                                        done(existed);
                                      });
              });
        },
        CountTrue);
  }
  static void Exists(Ctx& c) {
    RespApi* api = c.api;
    const Caller caller = c.caller();
    FanOut<absl::StatusOr<bool>>(
        c, 1, 1,
        [&](size_t i, auto done) {
          api->service_->Get(caller, {}, c.args[i],
                             [done = std::move(done)](absl::StatusOr<CachedValue> r) mutable {
                               if (r.ok()) return done(true);
                               if (absl::IsNotFound(r.status())) return done(false);
                               done(r.status());
                             });
        },
        CountTrue);
  }
  static void Ttl(Ctx& c, bool seconds) {
    Lookup(c, c.args[1], [seconds, clock = c.api->clock_](Writer& w, const CachedValue* v) {
      if (v == nullptr) return w.Integer(-2);
      if (v->deadline == kNoDeadline) return w.Integer(-1);
      const int64_t ms = std::max<int64_t>(0, v->deadline - clock->NowMillis());
      w.Integer(seconds ? (ms + 500) / 1000 : ms);
    });
  }
  static void Type(Ctx& c) {
    Lookup(c, c.args[1],
           [](Writer& w, const CachedValue* v) { w.Simple(v != nullptr ? "string" : "none"); });
  }
  static void StrLen(Ctx& c) {
    Lookup(c, c.args[1], [](Writer& w, const CachedValue* v) {
      w.Integer(v != nullptr ? static_cast<int64_t>(v->data.size()) : 0);
    });
  }
};

const std::vector<RespApi::Command>& RespCommands::All() {
  using C = RespCommands;
  // clang-format off
  // name, arity, flags, first key, last key, step, group, summary, run
  static const std::vector<RespApi::Command> commands = {
      {"ping", -1, {"fast"}, 0, 0, 0, "connection", "Returns the server's liveliness response.", C::Ping},
      {"echo", 2, {"fast"}, 0, 0, 0, "connection", "Returns the given string.", C::Echo},
      {"hello", -1, {"noauth", "fast"}, 0, 0, 0, "connection", "Handshakes with the server.", C::Hello},
      {"auth", -2, {"noauth", "fast"}, 0, 0, 0, "connection",
       "Authenticates the connection (the password is a --auth-token-file token).", C::Auth},
      {"select", 2, {"fast"}, 0, 0, 0, "connection", "Changes the selected database (only 0).", C::Select},
      {"quit", -1, {"noauth", "fast"}, 0, 0, 0, "connection", "Closes the connection.", C::Quit},
      {"reset", 1, {"noauth", "fast"}, 0, 0, 0, "connection", "Resets the connection.", C::Reset},
      {"client", -2, {}, 0, 0, 0, "connection", "A container for client connection commands.", C::Client},
      {"command", -1, {"loading", "stale"}, 0, 0, 0, "server",
       "Returns detailed information about all commands.", C::Command},
      {"config", -2, {"admin"}, 0, 0, 0, "server", "CONFIG GET (save, appendonly, databases).", C::Config},
      {"info", -1, {"loading", "stale"}, 0, 0, 0, "server",
       "Returns information and statistics about the server.", C::Info},
      {"dbsize", 1, {"readonly", "fast"}, 0, 0, 0, "server", "Returns the number of keys this node holds.", C::DbSize},
      {"time", 1, {"fast"}, 0, 0, 0, "server", "Returns the server time.", C::Time},
      {"get", 2, {"readonly", "fast"}, 1, 1, 1, "string", "Returns the string value of a key.", C::Get},
      {"set", -3, {"write", "denyoom"}, 1, 1, 1, "string",
       "Sets the string value of a key (EX, PX, EXAT, PXAT; HOT: on every node).", C::Set},
      {"setex", 4, {"write", "denyoom"}, 1, 1, 1, "string",
       "Sets the string value and expiration time (seconds) of a key.", [](Ctx& c) { C::SetEx(c, true); }},
      {"psetex", 4, {"write", "denyoom"}, 1, 1, 1, "string",
       "Sets the string value and expiration time (milliseconds) of a key.", [](Ctx& c) { C::SetEx(c, false); }},
      {"mget", -2, {"readonly", "fast"}, 1, -1, 1, "string", "Returns the string values of one or more keys.", C::MGet},
      {"mset", -3, {"write", "denyoom"}, 1, -1, 2, "string", "Sets the string values of one or more keys.", C::MSet},
      {"del", -2, {"write"}, 1, -1, 1, "generic", "Deletes one or more keys.", C::Del},
      {"unlink", -2, {"write", "fast"}, 1, -1, 1, "generic", "Deletes one or more keys.", C::Del},
      {"exists", -2, {"readonly", "fast"}, 1, -1, 1, "generic", "Determines whether one or more keys exist.", C::Exists},
      {"ttl", 2, {"readonly", "fast"}, 1, 1, 1, "generic",
       "Returns the expiration time in seconds of a key.", [](Ctx& c) { C::Ttl(c, true); }},
      {"pttl", 2, {"readonly", "fast"}, 1, 1, 1, "generic",
       "Returns the expiration time in milliseconds of a key.", [](Ctx& c) { C::Ttl(c, false); }},
      {"type", 2, {"readonly", "fast"}, 1, 1, 1, "generic", "Determines the type of value stored at a key.", C::Type},
      {"strlen", 2, {"readonly", "fast"}, 1, 1, 1, "string", "Returns the length of a string value.", C::StrLen},
  };
  // clang-format on
  return commands;
}

const RespApi::Command* RespCommands::Find(std::string_view name) {
  static const auto* index = [] {
    auto* m = new absl::flat_hash_map<std::string, const RespApi::Command*>();
    for (const auto& cmd : All()) (*m)[cmd.name] = &cmd;
    return m;
  }();
  char lower[32];
  if (name.size() > sizeof lower) return nullptr;
  for (size_t i = 0; i < name.size(); ++i) {
    lower[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(name[i])));
  }
  const auto it = index->find(absl::string_view(lower, name.size()));
  return it == index->end() ? nullptr : it->second;
}

RespApi::RespApi(RespApiOptions options, CacheService* service, ClusterView* cluster,
                 const Clock* clock)
    : options_(options), service_(service), cluster_(cluster), clock_(clock) {}

void RespApi::Open(Session& session) {
  auto data = std::make_unique<RespSession>();
  data->identity = service_->Identify(std::nullopt);
  session.data = std::move(data);
  Track(session);
}

void RespApi::Track(const Session& session) {
  absl::MutexLock lock(&clients_mu_);
  clients_[session.id] = {session.remote, Data(session).name, session.connected, session.protocol};
}

void RespApi::Closed(Session& session) {
  absl::MutexLock lock(&clients_mu_);
  clients_.erase(session.id);
}

void RespApi::Dispatch(Session& session, Args args, Reply reply) {
  const Command* cmd = RespCommands::Find(args[0]);
  if (cmd == nullptr) {
    std::string shown;
    for (size_t i = 1; i < args.size() && shown.size() < 128; ++i) {
      absl::StrAppend(&shown, "'", std::string(args[i].substr(0, 64)), "' ");
    }
    reply.out().Error(absl::StrCat("ERR unknown command '", std::string(args[0].substr(0, 128)),
                                   "', with args beginning with: ", shown));
    return reply.Send();
  }
  const auto n = static_cast<int>(std::min<size_t>(args.size(), 1 << 30));
  if ((cmd->arity > 0 && n != cmd->arity) || (cmd->arity < 0 && n < -cmd->arity)) {
    WrongArity(reply.out(), cmd->name);
    return reply.Send();
  }
  Ctx c{this, session, args, std::move(reply)};
  cmd->run(c);
}

}  // namespace nexus
