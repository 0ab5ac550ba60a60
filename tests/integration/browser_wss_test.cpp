// A real browser as a client over wss: headless Chromium loads tests/integration/web/
// browser_wss.html (plain JavaScript written from docs/protocol.md), which logs in on gateway A
// over wss, sends a message to a user logged in on gateway B over plain tcp with the test client,
// receives that user's reply and ACKs it. Chromium trusts the test certificate by its public key
// only (--ignore-certificate-errors-spki-list), not by ignoring certificate errors wholesale.
// LocalTransports: the shipped configurations that offer these transports pass --check-config.
#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cctype>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "../support/loopback_http.hpp"
#include "../support/process.hpp"
#include "../support/test_certs.hpp"
#include "../support/test_client.hpp"
#include "common/config.hpp"
#include "ops_chromium.hpp"

namespace imgate::test {
namespace {

const std::string token_secret = "browser-test-token-secret-0123456789";
const std::string cluster_secret = "browser-test-cluster-secret-0123456789";
// Ids as apps use them (docs/protocol.md, "Identifiers"): e-mail addresses, not only ASCII.
const std::string browser_user = "anaïs.browser@example.com";
const std::string tcp_user = "bjørn.tcp@example.com";
const std::string greeting = "Grüße, 世界";
// A 4-byte UTF-8 character too: JavaScript holds it as a surrogate pair.
const std::string reply_text = "Danke! 谢谢, Grüße zurück 👋";

// Percent-encodes everything but unreserved characters (RFC 3986), for the page's fragment.
std::string percent_encode(const std::string& s) {
    static const char hex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

// base64(SHA-256(SubjectPublicKeyInfo)) of a PEM certificate: what Chromium's
// --ignore-certificate-errors-spki-list names to trust that one key.
std::string spki_sha256_base64(const std::string& cert) {
    auto [rc, out] = run_command("openssl x509 -in " + shell_quote(cert) +
                                 " -pubkey -noout | openssl pkey -pubin -outform der |"
                                 " openssl dgst -sha256 -binary | base64 -w0");
    if (rc != 0) return "";
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    return out;
}

// The text of the element with this id in a dumped DOM ("" when absent). The page's script is
// in the dump too, so assertions look at elements, never at the whole document.
std::string element_text(const std::string& dom, const std::string& id) {
    auto at = dom.find("id=\"" + id + "\">");
    if (at == std::string::npos) return "";
    auto begin = dom.find('>', at) + 1;
    auto end = dom.find('<', begin);
    return dom.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
}

// Serves the page, takes its POST /result, and holds GET /hold (an image at the end of the page)
// open until the result arrived: the page's load event, and with it Chromium's --dump-dom,
// waits for the exchange instead of the test guessing how long it takes.
class page_server {
  public:
    explicit page_server(std::string page) : page_(std::move(page)) {
        auto& s = http_.server();
        s.route(http::verb::get, "/", http_sync_handler([this](const http_request_ctx&) {
                    return http_response::text(page_, "text/html; charset=utf-8");
                }));
        route_options body;
        body.body_limit = 64 * 1024;
        s.route(http::verb::post, "/result", http_sync_handler([this](const http_request_ctx& ctx) {
                    std::lock_guard lk(mu_);
                    result_ = ctx.req.body();
                    arrived_ = true;
                    // Same io thread as the holds: cancelling their timers here is safe.
                    for (auto* t : holds_) t->cancel();
                    cv_.notify_all();
                    return http_response::json(http::status::ok, "{}");
                }),
                body);
        s.route(http::verb::get, "/hold",
                http_handler([this](http_request_ctx) -> asio::awaitable<http_response> {
                    asio::steady_timer t(co_await asio::this_coro::executor, hold_limit);
                    {
                        std::lock_guard lk(mu_);
                        if (arrived_) co_return http_response{http::status::no_content};
                        holds_.push_back(&t);
                    }
                    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
                    std::lock_guard lk(mu_);
                    std::erase(holds_, &t);
                    co_return http_response{http::status::no_content};
                }));
        http_.start(1);
    }

    std::string url() const { return "http://" + http_.addr() + "/"; }

    // The body the page POSTed, or nullopt if none came within timeout.
    std::optional<std::string> wait_result(std::chrono::milliseconds timeout) {
        std::unique_lock lk(mu_);
        if (!cv_.wait_for(lk, timeout, [&] { return arrived_; })) return std::nullopt;
        return result_;
    }

  private:
    // Longest a page load is held when the page never reports (a failing test still ends).
    static constexpr std::chrono::seconds hold_limit{45};
    std::string page_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::string result_;
    bool arrived_ = false;
    std::vector<asio::steady_timer*> holds_;
    // Last: stopped and joined before the state its handlers use goes.
    loopback_http http_{[] {
        http_server_options o;
        o.name = "browser-test";
        o.read_timeout = std::chrono::seconds(30);
        return o;
    }()};
};

// Gateway A serves only wss, gateway B only tcp; one fleet, meshed, one gateway.yaml whose tls
// block names a certificate made at test time by dev-certs.sh.
class two_gateways {
  public:
    two_gateways() {
        const auto& certs = test_certs("browser");
        namespace fs = std::filesystem;
        fs::copy_file(certs.server_crt, dir_.file("server.crt"));
        fs::copy_file(certs.server_key, dir_.file("server.key"));
        fs::permissions(dir_.file("server.key"), fs::perms::owner_read | fs::perms::owner_write);
        write_secret_file(dir_.file("token.secret"), token_secret + "\n");
        write_secret_file(dir_.file("cluster.secret"), cluster_secret + "\n");
        wss_port_ = free_port();
        tcp_port_ = free_port();
        auto port = [] { return std::to_string(free_port()); };
        write_file(dir_.file("fleet.yaml"),
                   "cluster:\n  secret_file: cluster.secret\ngateways:\n"
                   "  - id: gwA\n    wss: 127.0.0.1:" +
                       std::to_string(wss_port_) + "\n    admin: 127.0.0.1:" + port() +
                       "\n    rpc: 127.0.0.1:" + port() +
                       "\n"
                       "  - id: gwB\n    client: 127.0.0.1:" +
                       std::to_string(tcp_port_) + "\n    admin: 127.0.0.1:" + port() +
                       "\n    rpc: 127.0.0.1:" + port() + "\n");
        write_file(dir_.file("gateway.yaml"),
                   "fleet: fleet.yaml\nworkers: 1\nauth:\n  secret_files: [token.secret]\n"
                   "tls:\n  cert_file: server.crt\n  key_file: server.key\n"
                   "log:\n  level: info\n");
    }

    // Starts both and waits until each has its RPC link to the other (a message from A to a
    // user on B needs it). False, with the logs in *why, otherwise.
    bool start(std::string* why) {
        for (const char* id : {"gwA", "gwB"}) {
            gws_[id] = std::make_unique<daemon_process>(
                id, binary_path("imgate-gateway"),
                std::vector<std::string>{"--config", dir_.file("gateway.yaml"), "--id", id}, dir_);
            if (!gws_[id]->wait_ready()) {
                *why = std::string(id) + " did not get ready:\n" + gws_[id]->log();
                return false;
            }
        }
        bool meshed =
            eventually([&] { return links_up("gwA") == 1 && links_up("gwB") == 1; }, 10000ms, 50ms);
        if (!meshed) *why = "no RPC mesh:\n" + gws_["gwA"]->log() + gws_["gwB"]->log();
        return meshed;
    }

    std::string wss_url() const { return "wss://127.0.0.1:" + std::to_string(wss_port_) + "/"; }
    std::string tcp_addr() const { return "127.0.0.1:" + std::to_string(tcp_port_); }
    std::string logs() { return gws_["gwA"]->log() + "\n" + gws_["gwB"]->log(); }
    std::string cert() const { return dir_.file("server.crt"); }

  private:
    double links_up(const std::string& id) {
        auto body = http_get(gws_[id]->addr("admin"), "/metrics").body;
        std::istringstream in(body);
        std::string line, series = "imgate_rpc_links_up ";
        while (std::getline(in, line))
            if (line.rfind(series, 0) == 0) return std::stod(line.substr(series.size()));
        return -1;
    }

    temp_dir dir_;
    uint16_t wss_port_ = 0, tcp_port_ = 0;
    std::map<std::string, std::unique_ptr<daemon_process>> gws_;
};

TEST(BrowserWss, PageLogsInSendsAndReceivesTheReplyAcrossGateways) {
    temp_dir dir;
    std::string chromium;
    if (auto why = chromium_unusable(chromium, dir)) GTEST_SKIP() << *why;

    two_gateways fleet;
    std::string why;
    ASSERT_TRUE(fleet.start(&why)) << why;
    std::string spki = spki_sha256_base64(fleet.cert());
    ASSERT_EQ(spki.size(), 44u) << "openssl could not hash the certificate's public key";

    test_client tcp;
    ASSERT_TRUE(tcp.connect(fleet.tcp_addr()));
    auto login = tcp.login(make_token(token_secret, tcp_user, "desk"));
    ASSERT_TRUE(login) << fleet.logs();
    EXPECT_EQ(login->gateway_id, "gwB");

    page_server page(read_file(source_path("tests/integration/web/browser_wss.html")));
    std::string url = page.url() + "#wss=" + percent_encode(fleet.wss_url()) + "&token=" +
                      percent_encode(make_token(token_secret, browser_user, "browser")) +
                      "&to=" + percent_encode(tcp_user) + "&text=" + percent_encode(greeting);
    // Chromium runs until the page's load event, which /hold delays until the page reported;
    // `timeout` in run_chromium bounds it whatever happens.
    auto browser = std::async(std::launch::async, [&] {
        return run_chromium(chromium, dir, url, 1000,
                            "--ignore-certificate-errors-spki-list=" + spki);
    });

    // The page's message reaches the tcp user on the other gateway, byte for byte. Chromium's
    // start takes seconds; a page that gave up (its certificate refused, an ERROR frame) reports
    // at once, so its report ends the wait too.
    std::optional<proto::deliver_msg> d;
    auto deadline = std::chrono::steady_clock::now() + 45s;
    while (!d && !tcp.closed() && std::chrono::steady_clock::now() < deadline &&
           !page.wait_result(0ms))
        d = tcp.read<proto::deliver_msg>(200ms);
    ASSERT_TRUE(d) << "no DELIVER from the page; it reported: "
                   << page.wait_result(0ms).value_or("nothing") << "\n"
                   << fleet.logs();
    EXPECT_EQ(d->payload, greeting);
    EXPECT_EQ(d->from_user, browser_user);
    EXPECT_EQ(d->from_device, "browser");
    EXPECT_EQ(d->kind, proto::target_kind::user);

    // The reply; the page's ACK of it comes back as a RECEIPT naming the browser's session.
    ASSERT_TRUE(tcp.send(proto::ack_msg{d->server_msg_id}));
    ASSERT_TRUE(
        tcp.send(proto::send_msg{proto::target_kind::user, browser_user, 77, reply_text}, 5));
    auto sr = tcp.read<proto::send_result_msg>(10s);
    ASSERT_TRUE(sr);
    EXPECT_EQ(sr->status, proto::code::ok);
    EXPECT_EQ(sr->reached, 1u);
    auto receipt = tcp.read<proto::receipt_msg>(20s);
    ASSERT_TRUE(receipt) << "the page did not ACK the reply";
    EXPECT_EQ(receipt->client_msg_id, 77u);
    EXPECT_EQ(receipt->server_msg_id, sr->server_msg_id);
    EXPECT_EQ(receipt->user, browser_user);
    EXPECT_EQ(receipt->device, "browser");

    auto posted = page.wait_result(30s);
    auto r = browser.get();
    ASSERT_TRUE(posted) << "the page never reported; chromium exit " << r.exit_code << "\n"
                        << r.stderr_text << "\nDOM:\n"
                        << r.dom;
    auto result = nlohmann::json::parse(*posted, nullptr, false);
    ASSERT_TRUE(result.is_object()) << *posted;
    EXPECT_EQ(result.value("errors", nlohmann::json::array()), nlohmann::json::array()) << *posted;

    // What the page wrote into its DOM as the frames came.
    EXPECT_EQ(r.exit_code, 0) << r.stderr_text;
    EXPECT_EQ(element_text(r.dom, "login"),
              "ok user=" + browser_user + " device=browser gateway=gwA")
        << r.dom;
    EXPECT_EQ(element_text(r.dom, "send"), "ok reached=1") << r.dom;
    EXPECT_EQ(element_text(r.dom, "reply-from"), tcp_user + "/desk") << r.dom;
    EXPECT_EQ(element_text(r.dom, "reply"), reply_text) << r.dom;
    EXPECT_EQ(element_text(r.dom, "errors"), "") << r.dom;
    EXPECT_EQ(element_text(r.dom, "done"), "yes") << r.dom;
}

// The configurations that point browsers and apps at these transports: config/local (what
// `make run` starts, and what the browser above would open in development) gives every gateway
// tls, ws and wss on the documented port scheme and passes --check-config once dev-certs.sh made
// its certificates, as run-fleet.sh does; config/etc's commented-out examples pass it when
// uncommented.
std::pair<int, std::string> check_config(const std::string& dir, const std::string& id) {
    return run_command("timeout 30 " + shell_quote(binary_path("imgate-gateway")) + " --config " +
                       shell_quote(dir + "/gateway.yaml") + " --id " + id + " --check-config");
}

TEST(LocalTransports, LocalFleetServesEveryTransportWithTheDevelopmentCertificate) {
    temp_dir dir;
    for (auto* f : {"fleet.yaml", "gateway.yaml"})
        write_file(dir.file(f), read_file(source_path(std::string("config/local/") + f)));
    for (auto* f : {"token.secret", "admin.token", "cluster.secret"})
        write_secret_file(dir.file(f), read_file(source_path(std::string("config/local/") + f)));
    // Without certificates the tls block is refused: the check below is not vacuous.
    auto [nrc, nout] = check_config(dir.path().string(), "gw1");
    EXPECT_NE(nrc, 0) << nout;
    EXPECT_NE(nout.find("certs/server"), std::string::npos) << nout;

    auto [crc, cout] = run_command(shell_quote(source_path("config/local/dev-certs.sh")) + " " +
                                   shell_quote(dir.file("certs")) + " 2>&1");
    ASSERT_EQ(crc, 0) << cout;
    auto fleet = load_fleet(dir.file("fleet.yaml"));
    ASSERT_EQ(fleet.gateways.size(), 3u);
    for (size_t i = 0; i < fleet.gateways.size(); ++i) {
        const auto& g = fleet.gateways[i];
        // 90xx tcp, 94xx tls, 95xx ws, 96xx wss; the last digit is the gateway's number.
        const std::map<transport, int> base{{transport::tcp, 9000},
                                            {transport::tls, 9400},
                                            {transport::ws, 9500},
                                            {transport::wss, 9600}};
        for (auto [t, b] : base) {
            ASSERT_TRUE(g.serves(t)) << g.id << " " << to_string(t);
            EXPECT_EQ(g.address_of(t)->to_string(), "127.0.0.1:" + std::to_string(b + 1 + i))
                << g.id << " " << to_string(t);
        }
        auto [rc, out] = check_config(dir.path().string(), g.id);
        EXPECT_EQ(rc, 0) << g.id << ": " << out;
    }
}

TEST(LocalTransports, EtcTlsExamplesPassCheckConfigWhenUncommented) {
    temp_dir etc;
    // Uncommenting: "    # tls: ..." -> "    tls: ...", at the indentation of the other keys.
    auto uncomment = [](std::string text, const std::vector<std::string>& keys) {
        for (auto& k : keys) text = std::regex_replace(text, std::regex("# (" + k + ")"), "$1");
        return text;
    };
    auto fleet = read_file(source_path("config/etc/fleet.yaml"));
    auto gw = read_file(source_path("config/etc/gateway.yaml"));
    // Both are off as shipped.
    EXPECT_EQ(load_fleet(source_path("config/etc/fleet.yaml")).gateways[0].serves(transport::wss),
              false);
    write_file(etc.file("fleet.yaml"),
               uncomment(fleet, {"tls: gw1", "tls_listen: ", "wss: gw1", "wss_listen: "}));
    // In gateway.yaml the block starts at column 0: "# tls:" -> "tls:", "#   x" -> "  x".
    gw = std::regex_replace(gw, std::regex("\\n# tls:"), "\ntls:");
    gw = std::regex_replace(
        gw, std::regex("\\n#   (cert_file|key_file|min_version|handshake_timeout|max_handshakes)"),
        "\n  $1");
    write_file(etc.file("gateway.yaml"), gw);
    write_file(etc.file("dispatcher.yaml"), read_file(source_path("config/etc/dispatcher.yaml")));
    for (auto f : {"cluster.secret", "token.secret", "admin.token"})
        write_secret_file(etc.file(f),
                          "an-operator-made-secret-" + std::string(f) + "-0123456789\n");
    auto [crc, cout] = run_command(shell_quote(source_path("config/local/dev-certs.sh")) + " " +
                                   shell_quote(etc.file("certs")) + " 2>&1");
    ASSERT_EQ(crc, 0) << cout;
    std::filesystem::create_directories(etc.file("tls"));
    std::filesystem::copy_file(etc.file("certs/server.crt"), etc.file("tls/gw.crt"));
    std::filesystem::copy_file(etc.file("certs/server.key"), etc.file("tls/gw.key"));

    auto f = load_fleet(etc.file("fleet.yaml"));
    const auto& gw1 = f.gateways[0];
    ASSERT_TRUE(gw1.serves(transport::tls));
    ASSERT_TRUE(gw1.serves(transport::wss));
    EXPECT_EQ(gw1.address_of(transport::wss)->to_string(), "gw1.im.example.com:443");
    EXPECT_EQ(gw1.listen_of(transport::wss)->to_string(), "0.0.0.0:9643");
    EXPECT_TRUE(std::regex_search(gw, std::regex("\ntls: +#[^\n]*\n  cert_file: tls/gw.crt")))
        << gw;
    auto [rc, out] = check_config(etc.path().string(), gw1.id);
    EXPECT_EQ(rc, 0) << out;
}

}  // namespace
}  // namespace imgate::test
