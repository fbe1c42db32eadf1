// TLS between sites (issue 13, item 10): the real eventstream-producer and
// eventstream-consumer (tests/support/two_sites.h) serving and dialling TLS
// with certificates made at run time by the openssl CLI in a temp dir (no
// key is committed). The tests' own clients use grpc::SslCredentials, not
// the services' code (services/common/tls.h), so they check the services
// against a TLS client nobody here wrote.
//
// Scenarios: server TLS (the consumer verifies hq by its CA; the right CA
// and name are needed); mutual TLS both ways (pulls and Notify) with hq's
// certificate rotated mid-stream the way Kubernetes updates a mounted Secret
// (replication goes on; a fresh connection gets the new serial); a wrong CA
// refused on either side; a plaintext client refused by a TLS server with a
// clear error; plaintext off loopback warned about; bad certificate files
// stopping the start with a line naming the key and file.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "eventstream/v1/consumer.grpc.pb.h"
#include "eventstream/v1/producer.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "services/common/tls.h"
#include "tests/support/frappe_schema.h"
#include "tests/support/process.h"
#include "tests/support/two_sites.h"

namespace eventstream::testing {
namespace {

// Certificates for the tests, made once per run with the openssl CLI:
// two unrelated CAs (`ca` trusted by both sites, `rogue` trusted by nobody)
// and leaves named for who holds them. Each leaf names 127.0.0.1 and
// localhost and has no extended key usage, so one certificate serves as a
// site's server and client identity (as one cert-manager Certificate would).
class Pki {
 public:
  Pki() : dir_("tls-test") {}

  const std::string& dir() const { return dir_.path(); }
  std::string Path(const std::string& file) const { return dir() + "/" + file; }
  std::string Read(const std::string& file) const { return ReadFile(Path(file)); }

  // <name>.key, <name>.crt: a self-signed CA.
  void MakeCa(const std::string& name) {
    Openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", Path(name + ".key"), "-out", Path(name + ".crt"), "-days", "2", "-subj",
             "/CN=eventstream test " + name});
  }

  // <name>.key, <name>.crt: a leaf signed by `ca`, with `serial`.
  void Issue(const std::string& ca, const std::string& name, const std::string& serial) {
    WriteFile(Path(name + ".ext"),
              "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n");
    Openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
             Path(name + ".key"), "-out", Path(name + ".csr"), "-subj", "/CN=" + name});
    Openssl({"x509", "-req", "-in", Path(name + ".csr"), "-CA", Path(ca + ".crt"), "-CAkey",
             Path(ca + ".key"), "-set_serial", "0x" + serial, "-days", "2", "-extfile",
             Path(name + ".ext"), "-out", Path(name + ".crt")});
  }

  // A directory laid out as Kubernetes mounts a Secret: tls.crt and tls.key
  // are symlinks through `..data`, a symlink to a versioned directory, so
  // one rename() swaps both files at once (what the kubelet does when
  // cert-manager renews the Secret).
  std::string MountLike(const std::string& mount, const std::string& leaf) {
    const std::string root = Path(mount);
    std::filesystem::create_directories(root);
    Project(mount, leaf);
    Link("..data/tls.crt", root + "/tls.crt");
    Link("..data/tls.key", root + "/tls.key");
    return root;
  }
  // Points the mount at `leaf`'s certificate and key, atomically.
  void Project(const std::string& mount, const std::string& leaf) {
    const std::string root = Path(mount);
    const std::string version = absl::StrCat("..", leaf, "_", ++versions_);
    std::filesystem::create_directory(root + "/" + version);
    std::filesystem::copy_file(Path(leaf + ".crt"), root + "/" + version + "/tls.crt");
    std::filesystem::copy_file(Path(leaf + ".key"), root + "/" + version + "/tls.key");
    Link(version, root + "/..data_tmp");
    ASSERT_EQ(std::rename((root + "/..data_tmp").c_str(), (root + "/..data").c_str()), 0);
  }

 private:
  static void Openssl(std::vector<std::string> args) {
    args.insert(args.begin(), "/usr/bin/openssl");
    CommandResult r = RunCommand(args);
    ASSERT_EQ(r.exit_code, 0) << "openssl " << args[1] << " ... " << args.back() << ": "
                              << r.output;
  }
  static void Link(const std::string& target, const std::string& path) {
    ASSERT_EQ(symlink(target.c_str(), path.c_str()), 0) << path;
  }

  ScopedTempDir dir_;
  int versions_ = 0;
};

// The run's certificates: CA `ca` signs hq (serials 1001, then 1002 after
// rotation) and branch; CA `rogue` signs `intruder`.
// The directory (keys included) is removed at exit.
Pki& Certs() {
  static Pki pki;
  static const bool made = [] {
    pki.MakeCa("ca");
    pki.MakeCa("rogue");
    pki.Issue("ca", "hq", "1001");
    pki.Issue("ca", "hq-renewed", "1002");
    pki.Issue("ca", "branch", "2001");
    pki.Issue("rogue", "intruder", "3001");
    return true;
  }();
  (void)made;
  return pki;
}

// A flow mapping for the config, e.g. Yaml({{"ca_file", "/x"}}).
std::string Yaml(const std::vector<std::pair<std::string, std::string>>& keys) {
  std::string out = "{";
  for (const auto& [k, v] : keys) absl::StrAppend(&out, out.size() > 1 ? ", " : "", k, ": \"", v, "\"");
  return out + ", refresh_interval: 1s}";
}

// A channel of the tests' own: TLS with grpc::SslCredentials (roots, and a
// client certificate when `leaf` is set), or plaintext when `ca` is "".
// Each has its own subchannel pool, so it makes a connection of its own.
std::shared_ptr<grpc::Channel> Dial(const std::string& address, const std::string& ca,
                                    const std::string& leaf = "",
                                    const std::string& server_name = "") {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  if (ca.empty()) return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = Certs().Read(ca + ".crt");
  if (!leaf.empty()) {
    ssl.pem_private_key = Certs().Read(leaf + ".key");
    ssl.pem_cert_chain = Certs().Read(leaf + ".crt");
  }
  if (!server_name.empty()) args.SetSslTargetNameOverride(server_name);
  return grpc::CreateCustomChannel(address, grpc::SslCredentials(ssl), args);
}

struct HealthAnswer {
  grpc::Status status;
  std::string server_serial;  // of the certificate the server presented
};

HealthAnswer CheckHealth(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  HealthAnswer answer;
  answer.status = stub->Check(&ctx, req, &resp);
  if (answer.status.ok() && ctx.auth_context() != nullptr) {
    for (const auto& pem : ctx.auth_context()->FindPropertyValues("x509_pem_cert")) {
      auto serial = CertificateSerial(std::string(pem.data(), pem.size()));
      if (serial.ok()) answer.server_serial = *serial;
    }
  }
  return answer;
}

class TlsTest : public ::testing::Test {
 protected:
  static TwoSites::Spec BaseSpec() { return TwoSites::NoteSpec(NoteDocType({}), NoteTable({})); }

  void Create(TwoSites::Spec spec) {
    auto sites = TwoSites::Create(std::move(spec));
    ASSERT_TRUE(sites.ok()) << sites.status();
    sites_ = std::move(*sites);
  }

  // Inserts Note `name` on hq and waits until branch has it.
  void Replicates(const std::string& name, absl::Duration timeout = absl::Seconds(15)) {
    ASSERT_TRUE(sites_->hq()
                    ->ExecScript(absl::StrCat("INSERT INTO \"tabNote\" (name, title) VALUES ('",
                                              name, "', 'over TLS')"))
                    .ok());
    const std::string sql =
        absl::StrCat("SELECT title FROM \"tabNote\" WHERE name = '", name, "'");
    ASSERT_TRUE(Eventually([&] { return QueryText(sites_->branch(), sql) == "over TLS"; },
                           timeout))
        << name << " did not arrive\n"
        << sites_->Logs();
  }

  // ListProducers on branch's consumer over `channel`: hq's entry.
  v1::ProducerInfo HqOnBranch(const std::shared_ptr<grpc::Channel>& channel) {
    auto stub = v1::Consumer::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", TwoSites::kBranchAdmin);
    v1::ListProducersResponse resp;
    grpc::Status s = stub->ListProducers(&ctx, {}, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.producers_size() == 1 ? resp.producers(0) : v1::ProducerInfo();
  }

  // Waits (10 s) until branch's consumer failed to reach hq; `*hq` is then
  // its entry for hq, read over plaintext.
  void AwaitHqFailing(v1::ProducerInfo* hq) {
    ASSERT_TRUE(Eventually(
        [&] {
          *hq = HqOnBranch(Dial(sites_->consumer_address(), ""));
          return hq->consecutive_failures() > 0;
        },
        absl::Seconds(10)))
        << sites_->Logs();
  }

  // Waits until branch's consumer has registered with hq, which installs
  // capture on hq (a document written before that is not captured).
  void AwaitRegistered() {
    ASSERT_TRUE(Eventually([&] {
      return absl::StrContains(sites_->ConsumerLog(), "registered with producer hq");
    })) << sites_->Logs();
  }

  int64_t ConsumersOnHq() {
    return QueryInt(sites_->hq(), "SELECT count(*) FROM es_producer.consumer");
  }

  std::unique_ptr<TwoSites> sites_;
};

// One-way TLS: hq serves TLS, asks for no client certificate; branch's
// consumer verifies hq against the CA, by the address it dials (127.0.0.1,
// in the certificate's names). Branch serves TLS too, but hq was not told
// (no notify_tls): its Notify calls fail and say why, and the document
// still arrives by polling. (Pull delivery: a consumer streaming from hq is
// sent no Notify at all.)
TEST_F(TlsTest, ServerTls) {
  Pki& pki = Certs();
  TwoSites::Spec spec = BaseSpec();
  spec.delivery = "pull";
  spec.producer_tls = Yaml({{"cert_file", pki.Path("hq.crt")}, {"key_file", pki.Path("hq.key")}});
  spec.consumer_producer_tls = Yaml({{"ca_file", pki.Path("ca.crt")}});
  spec.consumer_tls =
      Yaml({{"cert_file", pki.Path("branch.crt")}, {"key_file", pki.Path("branch.key")}});
  spec.poll_interval = "1s";
  Create(std::move(spec));
  ASSERT_TRUE(sites_->StartProducer().ok()) << sites_->Logs();
  EXPECT_TRUE(absl::StrContains(sites_->ProducerLog(), "(TLS, certificate CN=hq, serial 1001"))
      << sites_->ProducerLog();
  EXPECT_TRUE(absl::StrContains(sites_->ProducerLog(), "no client certificate asked for"));
  ASSERT_TRUE(sites_->StartConsumer().ok()) << sites_->Logs();
  AwaitRegistered();
  Replicates("N-server-tls");
  EXPECT_TRUE(Eventually([&] {
    return absl::StrContains(sites_->ProducerLog(),
                             "this producer notifies without TLS; if the consumer serves TLS, "
                             "set producer.notify_tls");
  })) << sites_->ProducerLog();

  // A client that trusts the CA gets in, without a certificate of its own;
  // so does one naming the server "localhost"; a name the certificate does
  // not carry is refused.
  const std::string hq = sites_->producer_address();
  HealthAnswer ok = CheckHealth(Dial(hq, "ca"));
  EXPECT_TRUE(ok.status.ok()) << ok.status.error_message();
  EXPECT_EQ(ok.server_serial, "1001");
  EXPECT_TRUE(CheckHealth(Dial(hq, "ca", "", "localhost")).status.ok());
  HealthAnswer wrong_name = CheckHealth(Dial(hq, "ca", "", "hq.example.com"));
  EXPECT_EQ(wrong_name.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(absl::StrContains(wrong_name.status.error_message(), "is not in peer certificate"))
      << wrong_name.status.error_message();
}

// Mutual TLS everywhere: hq and branch each require a client certificate
// from the CA; branch pulls with its certificate and hq calls branch's
// Notify with its own. poll_interval is long, so documents that arrive at
// once came by Notify. hq's certificate is then rotated as Kubernetes does
// it while documents keep flowing: replication goes on, and a new
// connection is handed the new certificate.
TEST_F(TlsTest, MutualTlsAndRotationMidStream) {
  Pki& pki = Certs();
  const std::string hq_mount = pki.MountLike("hq-mount", "hq");
  TwoSites::Spec spec = BaseSpec();
  spec.poll_interval = "1h";
  spec.producer_tls = Yaml({{"cert_file", hq_mount + "/tls.crt"},
                            {"key_file", hq_mount + "/tls.key"},
                            {"client_ca_file", pki.Path("ca.crt")}});
  spec.producer_notify_tls = Yaml({{"ca_file", pki.Path("ca.crt")},
                                   {"cert_file", hq_mount + "/tls.crt"},
                                   {"key_file", hq_mount + "/tls.key"}});
  spec.consumer_tls = Yaml({{"cert_file", pki.Path("branch.crt")},
                            {"key_file", pki.Path("branch.key")},
                            {"client_ca_file", pki.Path("ca.crt")}});
  spec.consumer_producer_tls = Yaml({{"ca_file", pki.Path("ca.crt")},
                                     {"server_name", "localhost"},
                                     {"cert_file", pki.Path("branch.crt")},
                                     {"key_file", pki.Path("branch.key")}});
  Create(std::move(spec));
  ASSERT_TRUE(sites_->StartProducer().ok()) << sites_->Logs();
  EXPECT_TRUE(absl::StrContains(sites_->ProducerLog(), "client certificates required"));
  ASSERT_TRUE(sites_->StartConsumer().ok()) << sites_->Logs();
  // What arrives after the consumer's first pull within seconds was
  // notified (the poll is 1 h).
  AwaitRegistered();
  absl::SleepFor(absl::Milliseconds(300));
  Replicates("N-mtls-1", absl::Seconds(10));

  // Both servers refuse a client without a certificate; branch's consumer
  // answers its operator with one.
  EXPECT_EQ(CheckHealth(Dial(sites_->producer_address(), "ca")).status.error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(CheckHealth(Dial(sites_->consumer_address(), "ca")).status.error_code(),
            grpc::StatusCode::UNAVAILABLE);
  v1::ProducerInfo hq = HqOnBranch(Dial(sites_->consumer_address(), "ca", "branch"));
  EXPECT_TRUE(hq.reachable()) << hq.DebugString();

  HealthAnswer before = CheckHealth(Dial(sites_->producer_address(), "ca", "branch"));
  ASSERT_TRUE(before.status.ok()) << before.status.error_message();
  EXPECT_EQ(before.server_serial, "1001");

  // Rotate hq's certificate while documents keep being written.
  pki.Project("hq-mount", "hq-renewed");
  std::string serial;
  int written = 0;
  ASSERT_TRUE(Eventually(
      [&] {
        Replicates(absl::StrCat("N-rotating-", ++written), absl::Seconds(10));
        serial = CheckHealth(Dial(sites_->producer_address(), "ca", "branch")).server_serial;
        return serial == "1002";
      },
      absl::Seconds(10)))
      << "a new connection still gets serial " << serial << "\n"
      << sites_->Logs();
  // The stream goes on after the rotation, Notify included.
  Replicates("N-after-rotation", absl::Seconds(10));
  EXPECT_TRUE(HqOnBranch(Dial(sites_->consumer_address(), "ca", "branch")).reachable());
  EXPECT_EQ(QueryInt(sites_->branch(), "SELECT count(*) FROM \"tabNote\""), written + 2);
}

// A certificate from a CA the other side does not trust is refused both
// ways: branch's consumer, given the wrong CA for hq, will not talk to hq
// (and says why); hq's mutual TLS refuses a client certificate from the
// rogue CA, and a client with none.
TEST_F(TlsTest, WrongCaRefused) {
  Pki& pki = Certs();
  TwoSites::Spec spec = BaseSpec();
  spec.producer_tls = Yaml({{"cert_file", pki.Path("hq.crt")},
                            {"key_file", pki.Path("hq.key")},
                            {"client_ca_file", pki.Path("ca.crt")}});
  spec.consumer_producer_tls = Yaml({{"ca_file", pki.Path("rogue.crt")},
                                     {"cert_file", pki.Path("branch.crt")},
                                     {"key_file", pki.Path("branch.key")}});
  Create(std::move(spec));
  ASSERT_TRUE(sites_->StartProducer().ok()) << sites_->Logs();
  ASSERT_TRUE(sites_->StartConsumer().ok()) << sites_->Logs();
  v1::ProducerInfo hq;
  ASSERT_NO_FATAL_FAILURE(AwaitHqFailing(&hq));
  EXPECT_FALSE(hq.reachable());
  EXPECT_TRUE(absl::StrContains(hq.last_error(), "certificate verify failed")) << hq.last_error();
  EXPECT_TRUE(absl::StrContains(hq.last_error(),
                                "(TLS: the peer's certificate is not signed by a CA in this "
                                "side's ca_file"))
      << hq.last_error();
  EXPECT_TRUE(absl::StrContains(sites_->ConsumerLog(),
                                "TLS handshake failed: the peer's certificate is not signed"))
      << sites_->ConsumerLog();
  EXPECT_EQ(ConsumersOnHq(), 0);

  const std::string address = sites_->producer_address();
  EXPECT_EQ(CheckHealth(Dial(address, "ca", "intruder")).status.error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(CheckHealth(Dial(address, "ca")).status.error_code(),
            grpc::StatusCode::UNAVAILABLE);
  // A client that does not trust hq's CA refuses hq.
  EXPECT_EQ(CheckHealth(Dial(address, "rogue", "branch")).status.error_code(),
            grpc::StatusCode::UNAVAILABLE);
  HealthAnswer ok = CheckHealth(Dial(address, "ca", "branch"));
  EXPECT_TRUE(ok.status.ok()) << ok.status.error_message();
  // hq's log says why it refused the two clients.
  EXPECT_TRUE(Eventually([&] {
    const std::string log = sites_->ProducerLog();
    return absl::StrContains(log, "TLS handshake failed: the peer's certificate is not signed") &&
           absl::StrContains(log, "TLS handshake failed: the client presented no certificate");
  })) << sites_->ProducerLog();
}

// A plaintext client (grpcurl -plaintext, or a consumer without tls) gets
// nothing from a TLS server, and the consumer says what to change.
TEST_F(TlsTest, PlaintextClientRefusedWithClearError) {
  Pki& pki = Certs();
  TwoSites::Spec spec = BaseSpec();
  spec.producer_tls = Yaml({{"cert_file", pki.Path("hq.crt")}, {"key_file", pki.Path("hq.key")}});
  Create(std::move(spec));
  ASSERT_TRUE(sites_->StartProducer().ok()) << sites_->Logs();
  HealthAnswer plain = CheckHealth(Dial(sites_->producer_address(), ""));
  EXPECT_EQ(plain.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << plain.status.error_message();

  ASSERT_TRUE(sites_->StartConsumer().ok()) << sites_->Logs();
  v1::ProducerInfo hq;
  ASSERT_NO_FATAL_FAILURE(AwaitHqFailing(&hq));
  EXPECT_TRUE(absl::StrContains(hq.last_error(),
                                "this consumer connects without TLS; if the producer serves "
                                "TLS, set tls under this producer's entry in "
                                "consumer.producers"))
      << hq.last_error();
  EXPECT_EQ(ConsumersOnHq(), 0);
  // hq's log names the cause once, however often the clients retry.
  const std::string log = sites_->ProducerLog();
  EXPECT_TRUE(absl::StrContains(log, "TLS handshake failed: the peer does not speak TLS (a "
                                     "plaintext client such as grpcurl -plaintext"))
      << log;
  EXPECT_EQ(Occurrences(log, "the peer does not speak TLS"), 1u) << log;
}

// Plaintext on loopback is quiet; plaintext on every interface is warned
// about at start.
TEST_F(TlsTest, PlaintextOffLoopbackIsWarnedAbout) {
  Create(BaseSpec());
  ASSERT_TRUE(sites_->StartProducer().ok()) << sites_->Logs();
  EXPECT_TRUE(absl::StrContains(sites_->ProducerLog(), "listening on 127.0.0.1:"));
  EXPECT_TRUE(absl::StrContains(sites_->ProducerLog(), "(plaintext)"));
  EXPECT_FALSE(absl::StrContains(sites_->ProducerLog(), "WITHOUT TLS")) << sites_->ProducerLog();
  std::string config = absl::StrReplaceAll(
      sites_->ProducerConfig(),
      {{absl::StrCat("listen: \"", sites_->producer_address()), "listen: \"0.0.0.0:0"}});
  auto everywhere = StartService("eventstream-producer", config, TwoSites::Secrets());
  ASSERT_TRUE(everywhere.ok()) << everywhere.status();
  auto log = everywhere->process->WaitForLog(
      "eventstream-producer: serving WITHOUT TLS on 0.0.0.0:0: API keys, notify tokens and "
      "documents cross the network in the clear",
      absl::Seconds(5));
  EXPECT_TRUE(log.ok()) << log.status() << everywhere->process->Log();
}

// Bad certificate files stop the start with one line naming the key and the
// file (and never the key's contents); nothing is served.
TEST_F(TlsTest, BadCertificateFilesStopTheStart) {
  Pki& pki = Certs();
  Create(BaseSpec());
  ScopedTempDir dir("tls-bad");
  WriteFile(dir.path() + "/not-pem.crt", "hello\n");
  struct Case {
    std::string tls;
    std::string want;
  };
  const std::vector<Case> cases = {
      {Yaml({{"cert_file", pki.Path("hq.crt")}, {"key_file", pki.Path("branch.key")}}),
       absl::StrCat("config.yaml: producer.tls.key_file: the private key in ",
                    pki.Path("branch.key"), " does not belong to the certificate in ",
                    pki.Path("hq.crt"))},
      {Yaml({{"cert_file", dir.path() + "/missing.crt"}, {"key_file", pki.Path("hq.key")}}),
       absl::StrCat("config.yaml: producer.tls.cert_file: cannot read ", dir.path(),
                    "/missing.crt: No such file or directory")},
      {Yaml({{"cert_file", dir.path() + "/not-pem.crt"}, {"key_file", pki.Path("hq.key")}}),
       absl::StrCat("config.yaml: producer.tls.cert_file: no PEM certificate in ", dir.path(),
                    "/not-pem.crt (expected -----BEGIN CERTIFICATE-----)")},
      {Yaml({{"cert_file", pki.Path("hq.crt")},
             {"key_file", pki.Path("hq.key")},
             {"client_ca_file", pki.Path("hq.key")}}),
       absl::StrCat("config.yaml: producer.tls.client_ca_file: no PEM certificate in ",
                    pki.Path("hq.key"))},
  };
  const std::string key_pem = pki.Read("hq.key");
  for (const Case& c : cases) {
    std::string config = sites_->ProducerConfig();
    absl::StrAppend(&config, "  tls: ", c.tls, "\n");
    WriteFile(dir.path() + "/config.yaml", config);
    CommandResult r = RunCommand({BinDir() + "/eventstream-producer", "serve", "--config",
                                  dir.path() + "/config.yaml"},
                                 TwoSites::Secrets());
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_TRUE(absl::StrContains(r.output, c.want)) << r.output;
    EXPECT_FALSE(absl::StrContains(r.output, "listening on")) << r.output;
    EXPECT_FALSE(absl::StrContains(r.output, key_pem.substr(30, 40))) << r.output;
  }
}

}  // namespace
}  // namespace eventstream::testing
