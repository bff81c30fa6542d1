#include "support/process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <thread>

extern char** environ;

namespace nexus::testing {

namespace {

int ConnectLoopback(uint16_t port, std::chrono::milliseconds timeout) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{};
  tv.tv_sec = timeout.count() / 1000;
  tv.tv_usec = (timeout.count() % 1000) * 1000;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

int ListenLoopback(uint16_t* port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::listen(fd, 16);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

uint16_t FreePort() {
  // Ports below the kernel's ephemeral range (32768+ on Linux), so no outgoing connection of
  // this or another test can take the port between this check and the server's bind; chosen
  // at random so parallel test binaries rarely pick the same one, and checked by binding.
  static std::mutex mu;
  static std::set<uint16_t> handed_out;
  static std::mt19937 rng(
      static_cast<unsigned>(getpid()) * 7919u ^
      static_cast<unsigned>(std::chrono::steady_clock::now().time_since_epoch().count()));
  std::lock_guard<std::mutex> lock(mu);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const uint16_t port = static_cast<uint16_t>(20000 + rng() % 12000);
    if (handed_out.count(port) != 0) continue;
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    const bool free = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    close(fd);
    if (free) {
      handed_out.insert(port);
      return port;
    }
  }
  return 0;
}

std::unique_ptr<Process> Process::Start(const std::vector<std::string>& argv,
                                        const std::map<std::string, std::string>& env,
                                        const std::string& log_path) {
  // Everything the child needs is built before fork: the test is multi-threaded, so between
  // fork and exec the child may only make async-signal-safe calls (no malloc, no setenv).
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry(*e);
    const std::string name = entry.substr(0, entry.find('='));
    if (env.count(name) == 0) env_strings.push_back(entry);
  }
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (std::string& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> args_storage = argv;
  std::vector<char*> args;
  for (std::string& a : args_storage) args.push_back(a.data());
  args.push_back(nullptr);

  const pid_t pid = fork();
  if (pid < 0) return nullptr;
  if (pid == 0) {
    const int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (log >= 0) {
      dup2(log, 1);
      dup2(log, 2);
    }
    const int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    // The child must not inherit the test's blocked signals.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execve(args[0], args.data(), envp.data());
    static constexpr char kFailed[] = "exec failed\n";
    (void)!write(2, kFailed, sizeof kFailed - 1);
    _exit(127);
  }
  return std::unique_ptr<Process>(new Process(pid, log_path));
}

Process::~Process() {
  if (!reaped_) {
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
}

void Process::Signal(int sig) {
  if (!reaped_) kill(pid_, sig);
}

bool Process::WaitExit(std::chrono::milliseconds timeout, int* exit_code) {
  if (reaped_) return true;
  const auto give_up = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      if (exit_code != nullptr) {
        *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
      }
      return true;
    }
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

bool Process::Running() { return !WaitExit(std::chrono::milliseconds(0), nullptr); }

std::string Process::Log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

HttpResult ParseResponse(const std::string& raw) {
  HttpResult r;
  const size_t header_end = raw.find("\r\n\r\n");
  if (raw.compare(0, 5, "HTTP/") != 0 || header_end == std::string::npos) {
    r.error = raw.empty() ? "no response" : "unparseable response: " + raw.substr(0, 200);
    return r;
  }
  const size_t sp = raw.find(' ');
  r.status = std::atoi(raw.c_str() + sp + 1);
  size_t pos = raw.find("\r\n") + 2;
  while (pos < header_end) {
    const size_t eol = raw.find("\r\n", pos);
    const std::string line = raw.substr(pos, eol - pos);
    const size_t colon = line.find(':');
    if (colon != std::string::npos) {
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      size_t v = colon + 1;
      while (v < line.size() && line[v] == ' ') ++v;
      r.headers[name] = line.substr(v);
    }
    pos = eol + 2;
  }
  const size_t body_start = header_end + 4;
  auto it = r.headers.find("content-length");
  const size_t length = it != r.headers.end() ? std::stoul(it->second) : raw.size() - body_start;
  r.body = raw.substr(body_start, length);
  return r;
}

ShellResult RunShell(const std::string& command) {
  ShellResult r;
  FILE* pipe = popen(("exec </dev/null; " + command).c_str(), "r");
  if (pipe == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) r.out.append(buf, n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string RawExchange(uint16_t port, const std::string& bytes, std::chrono::milliseconds timeout,
                        bool half_close) {
  const int fd = ConnectLoopback(port, timeout);
  if (fd < 0) return "";
  size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  if (half_close) shutdown(fd, SHUT_WR);
  std::string out;
  char buf[16384];
  const auto give_up = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < give_up) {
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

LineClient::LineClient(uint16_t port) {
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
}

LineClient::~LineClient() { ::close(fd_); }

bool LineClient::Send(std::string_view bytes) {
  return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
         static_cast<ssize_t>(bytes.size());
}

std::string LineClient::ReadLines(int lines) {
  std::string got;
  char buf[4096];
  while (std::count(got.begin(), got.end(), '\n') < lines) {
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

bool LineClient::ReadsEof() {
  char c;
  return ::recv(fd_, &c, 1, 0) == 0;
}

HttpResult LineClient::ReadHttpResponse() {
  std::string got;
  char buf[4096];
  size_t want = std::string::npos;  // header bytes + Content-Length, once the headers are in
  while (want == std::string::npos || got.size() < want) {
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) return {};
    got.append(buf, static_cast<size_t>(n));
    const size_t end = got.find("\r\n\r\n");
    if (want == std::string::npos && end != std::string::npos) {
      const HttpResult head = ParseResponse(got.substr(0, end + 4));
      auto length = head.headers.find("content-length");
      want = end + 4 + (length == head.headers.end() ? 0 : std::stoul(length->second));
    }
  }
  return ParseResponse(got);
}

// (With a Content-Type of the caller's.)
static std::string HttpRequestText(uint16_t port, const std::string& method,
                                   const std::string& target, const std::string& body,
                                   const std::vector<std::string>& headers, bool keep_alive,
                                   const std::string& content_type) {
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                    (keep_alive ? "\r\n" : "\r\nConnection: close\r\n");
  for (const std::string& h : headers) req += h + "\r\n";
  if (!body.empty() || method == "POST") {
    req += "Content-Type: " + content_type + "\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\n";
  }
  return req + "\r\n" + body;
}

std::string HttpRequestText(uint16_t port, const std::string& method, const std::string& target,
                            const std::string& body, const std::vector<std::string>& headers,
                            bool keep_alive) {
  return HttpRequestText(port, method, target, body, headers, keep_alive,
                         "application/x-www-form-urlencoded");
}

HttpResult Http(uint16_t port, const std::string& method, const std::string& target,
                const std::string& body, std::chrono::milliseconds timeout,
                const std::string& content_type) {
  return ParseResponse(RawExchange(
      port, HttpRequestText(port, method, target, body, {}, /*keep_alive=*/false, content_type),
      timeout));
}

HttpResult HttpWithHeaders(uint16_t port, const std::string& method, const std::string& target,
                           const std::string& body, const std::vector<std::string>& headers) {
  return ParseResponse(
      RawExchange(port, HttpRequestText(port, method, target, body, headers, false)));
}

std::string OwnerOf(uint16_t http_port, const std::string& key) {
  const HttpResult r = Http(http_port, "GET", "/api/ring?key=" + key);
  if (r.status != 200) return "";
  const nlohmann::json ring = nlohmann::json::parse(r.body, nullptr, false);
  return ring.is_object() && ring["owner"].is_string() ? ring["owner"].get<std::string>() : "";
}

std::string KeyOwnedBy(uint16_t http_port, const std::string& owner, const std::string& prefix) {
  for (int i = 0;; ++i) {
    const std::string key = prefix + std::to_string(i);
    if (OwnerOf(http_port, key) == owner) return key;
  }
}

double MetricSum(uint16_t http_port, const std::string& name) {
  return MetricSumIn(Http(http_port, "GET", "/metrics").body, name);
}

double MetricSumIn(const std::string& exposition, const std::string& name) {
  const std::string text = "\n" + exposition;
  double total = -1;
  for (size_t pos = text.find("\n" + name); pos != std::string::npos;
       pos = text.find("\n" + name, pos + 1)) {
    const size_t after = pos + 1 + name.size();
    if (after >= text.size() || (text[after] != ' ' && text[after] != '{')) continue;
    const size_t eol = text.find('\n', after);
    const std::string line = text.substr(pos + 1, eol - pos - 1);
    total = (total < 0 ? 0 : total) + std::stod(line.substr(line.rfind(' ') + 1));
  }
  return total;
}

bool WaitHealthy(uint16_t http_port, std::chrono::milliseconds timeout) {
  const auto give_up = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < give_up) {
    if (Http(http_port, "GET", "/healthz", "", std::chrono::milliseconds(500)).status == 200) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

namespace {
const std::string* g_temp_dir = nullptr;  // TempDir's, for its exit handler
}  // namespace

std::string TempDir() {
  // (Never destroyed: the exit handler below still needs it.)
  static const std::string* const dir = [] {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base ? base : "/tmp") + "/nexus-test-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    auto* made = new std::string(mkdtemp(buf.data()));
    g_temp_dir = made;
    if (std::getenv("NEXUS_KEEP_TEST_LOGS") == nullptr) {
      std::atexit([] {
        std::error_code ec;
        std::filesystem::remove_all(*g_temp_dir, ec);
      });
    }
    return made;
  }();
  return *dir;
}

std::string WriteTempFile(const std::string& name, const std::string& text) {
  const std::string path = TempDir() + "/" + name;
  std::ofstream(path, std::ios::trunc) << text;
  return path;
}

std::string ClusterSecretFile() {
  static const std::string path =
      WriteTempFile("cluster.secret", "test-cluster-secret-0123456789\n");
  return path;
}

}  // namespace nexus::testing
