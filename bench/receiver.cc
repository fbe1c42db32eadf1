// bench-receiver: the webhook receiver tools/bench-webhooks delivers to. It
// must cost little CPU per request, since it shares the machine's cores with
// the producer and PostgreSQL it is measuring (the python3 server it replaces
// took ~140 us a request). One thread, epoll, non-blocking sockets, HTTP/1.1
// keep-alive and pipelining on 127.0.0.1:PORT:
//   POST/PUT/PATCH/DELETE, any path  -> 200 "ok" (counted)
//   GET /count                       -> 200, the number counted so far
//   other GETs 404, other methods 405, Transfer-Encoding 411, > 1 MiB 413;
//   "Expect: 100-continue" is honoured (libcurl sends it for large bodies).
// SIGTERM or SIGINT exit 0. Usage: bench-receiver PORT
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr size_t kMaxRequest = 1 << 20;  // request line + headers + body

struct Conn {
  std::string in;   // received, not yet parsed
  std::string out;  // answers not yet sent
  size_t out_pos = 0;
  bool closing = false;    // answer nothing more; once `out` is sent, close
  bool writing = false;    // registered for EPOLLOUT instead of EPOLLIN
  bool continued = false;  // sent "100 Continue" for the request being received
};

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool IEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

bool HasToken(std::string_view list, std::string_view token) {  // "a, b" has "b"
  while (!list.empty()) {
    size_t comma = list.find(',');
    if (IEquals(Trim(list.substr(0, comma)), token)) return true;
    list = comma == std::string_view::npos ? "" : list.substr(comma + 1);
  }
  return false;
}

void Answer(Conn& c, int status, std::string_view body) {
  const char* reason = status == 200   ? "OK"
                       : status == 404 ? "Not Found"
                       : status == 405 ? "Method Not Allowed"
                       : status == 411 ? "Length Required"
                       : status == 413 ? "Payload Too Large"
                                       : "Bad Request";
  char head[160];
  int n = snprintf(head, sizeof(head),
                   "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n%s\r\n",
                   status, reason, body.size(), c.closing ? "Connection: close\r\n" : "");
  c.out.append(head, n).append(body);
}

// The server: one epoll set, level-triggered, a connection registered either
// for EPOLLIN or (while an answer is only partly sent) for EPOLLOUT.
class Receiver {
 public:
  Receiver(int listen_fd, int epoll_fd) : listen_fd_(listen_fd), epoll_fd_(epoll_fd) {}
  [[noreturn]] void Run();

 private:
  void Accept();
  void OnReadable(int fd, Conn& c);
  void Parse(Conn& c);
  void Flush(int fd, Conn& c);
  void Watch(int fd, Conn& c, bool writing);
  void Close(int fd);

  const int listen_fd_;
  const int epoll_fd_;
  uint64_t count_ = 0;
  std::vector<std::unique_ptr<Conn>> conns_;  // indexed by fd
};

void Receiver::Run() {
  epoll_event events[256];
  while (true) {
    int n = epoll_wait(epoll_fd_, events, 256, -1);
    if (n < 0 && errno != EINTR) {
      perror("bench-receiver: epoll_wait");
      exit(1);
    }
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == listen_fd_) {
        Accept();
        continue;
      }
      Conn* c = fd < static_cast<int>(conns_.size()) ? conns_[fd].get() : nullptr;
      if (c == nullptr) continue;
      if (c->writing) {
        Flush(fd, *c);  // EPOLLERR/EPOLLHUP make the send fail and close
      } else {
        OnReadable(fd, *c);
      }
    }
  }
}

// Answers every complete request at the front of c.in and removes it.
void Receiver::Parse(Conn& c) {
  size_t pos = 0;
  while (!c.closing) {
    // Empty lines before a request line are allowed (RFC 9112 2.2).
    while (c.in.compare(pos, 2, "\r\n") == 0) pos += 2;
    std::string_view rest(c.in.data() + pos, c.in.size() - pos);
    size_t end = rest.find("\r\n\r\n");
    if (end == std::string_view::npos) {
      if (rest.size() > kMaxRequest) {
        c.closing = true;
        Answer(c, 413, "");
      }
      break;
    }
    std::string_view head = rest.substr(0, end + 2), line = head.substr(0, head.find("\r\n"));
    size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
    if (sp1 == std::string_view::npos || sp1 == sp2) {
      c.closing = true;
      Answer(c, 400, "bad request line\n");
      break;
    }
    std::string_view method = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    bool keep_alive = line.substr(sp2 + 1) != "HTTP/1.0", chunked = false, bad = false;
    bool expect_continue = false;
    size_t length = 0;
    for (size_t at = line.size() + 2; at < head.size();) {
      size_t eol = head.find("\r\n", at);
      std::string_view field = head.substr(at, eol - at);
      at = eol + 2;
      size_t colon = field.find(':');
      if (colon == std::string_view::npos) continue;
      std::string_view name = Trim(field.substr(0, colon)), value = Trim(field.substr(colon + 1));
      if (IEquals(name, "content-length")) {
        const char* last = value.data() + value.size();
        auto [ptr, ec] = std::from_chars(value.data(), last, length);
        if (ec == std::errc::result_out_of_range) length = kMaxRequest + 1;  // 413
        bad |= value.empty() || ptr != last || ec == std::errc::invalid_argument;
      } else if (IEquals(name, "transfer-encoding")) {
        chunked = !IEquals(value, "identity");
      } else if (IEquals(name, "expect")) {
        expect_continue = IEquals(value, "100-continue");
      } else if (IEquals(name, "connection")) {
        if (HasToken(value, "close")) keep_alive = false;
        if (HasToken(value, "keep-alive")) keep_alive = true;
      }
    }
    if (bad || chunked || end + 4 + length > kMaxRequest) {
      c.closing = true;
      Answer(c, bad ? 400 : chunked ? 411 : 413, bad ? "bad Content-Length\n" : "");
      break;
    }
    if (rest.size() < end + 4 + length) {  // the body is still on its way
      if (expect_continue && !c.continued) c.out.append("HTTP/1.1 100 Continue\r\n\r\n");
      c.continued = expect_continue;
      break;
    }
    pos += end + 4 + length;
    c.continued = false;
    c.closing = !keep_alive;
    if (method == "POST" || method == "PUT" || method == "PATCH" || method == "DELETE") {
      ++count_;
      Answer(c, 200, "ok");
    } else if (method == "GET" && target == "/count") {
      Answer(c, 200, std::to_string(count_));
    } else if (method == "GET") {
      Answer(c, 404, "not found\n");
    } else {
      Answer(c, 405, "");  // no body, so right for HEAD too
    }
  }
  c.in.erase(0, pos);
}

void Receiver::Close(int fd) {
  close(fd);  // also removes it from the epoll set
  conns_[fd].reset();
}

void Receiver::Watch(int fd, Conn& c, bool writing) {
  if (c.writing == writing) return;
  c.writing = writing;
  epoll_event ev{};
  ev.events = writing ? EPOLLOUT : EPOLLIN;
  ev.data.fd = fd;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
}

// Sends what it can of c.out; while some is left, waits for EPOLLOUT and reads
// nothing more (so a client that does not read cannot make `out` grow). After
// the last answer it shuts down its side and closes on the client's EOF:
// closing with unread input would reset the connection, which can destroy
// the answer in flight (a 413 for a body still being sent, say).
void Receiver::Flush(int fd, Conn& c) {
  while (c.out_pos < c.out.size()) {
    ssize_t n = send(fd, c.out.data() + c.out_pos, c.out.size() - c.out_pos, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return Watch(fd, c, true);
    if (n < 0) return Close(fd);
    c.out_pos += n;
  }
  c.out.clear();
  c.out_pos = 0;
  Watch(fd, c, false);
  if (c.closing) shutdown(fd, SHUT_WR);
}

// One read per event (epoll is level-triggered, so it comes back for more):
// keeps c.in below kMaxRequest plus one read.
void Receiver::OnReadable(int fd, Conn& c) {
  char buf[64 * 1024];
  ssize_t n = read(fd, buf, sizeof(buf));
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n <= 0) {                       // EOF or reset
    if (c.closing) return Close(fd);  // after our last answer
    Parse(c);                         // answer the requests that came whole
    c.closing = true;
  } else if (c.closing) {
    return;  // after our last answer: discard until EOF
  } else {
    c.in.append(buf, n);
    Parse(c);
  }
  Flush(fd, c);
}

void Receiver::Accept() {
  while (true) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN) perror("bench-receiver: accept");
      return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (conns_.size() <= static_cast<size_t>(fd)) conns_.resize(fd + 1);
    conns_[fd] = std::make_unique<Conn>();
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const char* usage =
      "usage: bench-receiver PORT\n"
      "Answers HTTP/1.1 POST/PUT/PATCH/DELETE on 127.0.0.1:PORT with 200 \"ok\" and\n"
      "counts them; GET /count answers the count. Stops on SIGTERM/SIGINT.\n";
  if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    fputs(usage, stdout);
    return 0;
  }
  char* end = nullptr;
  long port = argc == 2 ? strtol(argv[1], &end, 10) : 0;
  if (argc != 2 || *end != '\0' || port < 1 || port > 65535) {
    fputs(usage, stderr);
    return 2;
  }
  struct sigaction sa{};
  sa.sa_handler = [](int) { _exit(0); };
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  rlimit lim{};  // many connections: as many descriptors as allowed
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }

  int listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listen_fd, SOMAXCONN) != 0) {
    fprintf(stderr, "bench-receiver: 127.0.0.1:%ld: %s\n", port, strerror(errno));
    return 1;
  }
  int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listen_fd;
  epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listen_fd, &ev);
  fprintf(stderr, "bench-receiver: listening on 127.0.0.1:%ld\n", port);
  Receiver(listen_fd, epoll_fd).Run();
}
