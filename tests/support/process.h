// Test support: real child processes, free loopback ports and a tiny blocking HTTP client, for
// integration tests that run real nexuscache binaries. Every process a test starts is killed
// (by PID) when its Process object goes away, so nothing outlives the test.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace nexus::testing {

// A port that was free on 127.0.0.1 a moment ago and has not been handed out before by this
// process (so parallel calls in one test never collide).
uint16_t FreePort();

// A socket listening on a free loopback port (for stub servers); returns its fd, sets *port.
int ListenLoopback(uint16_t* port);

class Process {
 public:
  // Starts `argv[0]` with `argv`, extra environment `env`, stdout+stderr appended to `log_path`.
  static std::unique_ptr<Process> Start(const std::vector<std::string>& argv,
                                        const std::map<std::string, std::string>& env,
                                        const std::string& log_path);
  ~Process();  // SIGKILL + reap if still running

  pid_t pid() const { return pid_; }
  void Signal(int sig);
  // Waits up to `timeout` for exit; returns true and sets *exit_code (or -signal) if it exited.
  bool WaitExit(std::chrono::milliseconds timeout, int* exit_code);
  bool Running();
  const std::string& log_path() const { return log_path_; }
  std::string Log() const;

 private:
  Process(pid_t pid, std::string log_path) : pid_(pid), log_path_(std::move(log_path)) {}
  pid_t pid_;
  bool reaped_ = false;
  std::string log_path_;
};

struct HttpResult {
  int status = 0;  // 0 = no answer (connection failed, closed or timed out)
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string error;
};

// One request on a fresh connection (Connection: close). `body` non-empty => form POST body.
HttpResult Http(uint16_t port, const std::string& method, const std::string& target,
                const std::string& body = "",
                std::chrono::milliseconds timeout = std::chrono::milliseconds(5000),
                const std::string& content_type = "application/x-www-form-urlencoded");

// The text of one HTTP/1.1 request to 127.0.0.1:`port`; `headers` are extra lines without
// CRLF ("Authorization: Bearer x"). `body` non-empty (or POST) => a form body.
std::string HttpRequestText(uint16_t port, const std::string& method, const std::string& target,
                            const std::string& body, const std::vector<std::string>& headers,
                            bool keep_alive);
// Http with extra header lines.
HttpResult HttpWithHeaders(uint16_t port, const std::string& method, const std::string& target,
                           const std::string& body, const std::vector<std::string>& headers);

// Runs `command` with sh, stdin from /dev/null unless the command redirects it; what it wrote
// to stdout (add 2>&1 for stderr) and its exit code (-1 if it did not exit normally).
struct ShellResult {
  int exit_code = -1;
  std::string out;
};
ShellResult RunShell(const std::string& command);

// Sends raw bytes, then reads until the server closes or `timeout`; returns what was read.
std::string RawExchange(uint16_t port, const std::string& bytes,
                        std::chrono::milliseconds timeout = std::chrono::milliseconds(3000),
                        bool half_close = false);

// A blocking TCP client on 127.0.0.1:`port` for line protocols (receives time out after 5 s).
class LineClient {
 public:
  explicit LineClient(uint16_t port);
  ~LineClient();
  LineClient(const LineClient&) = delete;
  LineClient& operator=(const LineClient&) = delete;

  bool connected() const { return connected_; }
  // True if all of `bytes` was sent.
  bool Send(std::string_view bytes);
  // Reads until `lines` newlines arrived in total, or EOF / timeout; returns what was read.
  std::string ReadLines(int lines);
  // True if the server closed the connection (the next read is EOF).
  bool ReadsEof();
  // Reads one HTTP response (headers, then Content-Length bytes of body); status 0 if the
  // connection closed or timed out first.
  HttpResult ReadHttpResponse();

 private:
  int fd_ = -1;
  bool connected_ = false;
};

// Parses the first HTTP response in `raw` (status + body by Content-Length).
HttpResult ParseResponse(const std::string& raw);

// The sum of every sample of metric `name` in GET /metrics (all label combinations), or -1
// when there is none.
double MetricSum(uint16_t http_port, const std::string& name);
// The same over a Prometheus text exposition already fetched.
double MetricSumIn(const std::string& exposition, const std::string& name);

// The node that owns `key` according to GET /api/ring?key= on `http_port` ("" if no answer).
std::string OwnerOf(uint16_t http_port, const std::string& key);
// The first key `prefix`0, `prefix`1, ... that `owner` owns according to the node on
// `http_port`.
std::string KeyOwnedBy(uint16_t http_port, const std::string& owner, const std::string& prefix);

// Polls GET /healthz until it answers 200 or `timeout` passes.
bool WaitHealthy(uint16_t http_port, std::chrono::milliseconds timeout);

// A directory under $TMPDIR unique to this test process, for logs; removed when the process
// exits, unless NEXUS_KEEP_TEST_LOGS is set.
std::string TempDir();
// Writes `text` to TempDir()/`name` (replacing it) and returns the path.
std::string WriteTempFile(const std::string& name, const std::string& text);
// A cluster secret file (--cluster-secret-file) in TempDir(), the same for every caller: nodes
// that use it accept each other's calls.
std::string ClusterSecretFile();

}  // namespace nexus::testing
