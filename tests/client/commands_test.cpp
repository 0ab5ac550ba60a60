#include "client/commands.hpp"

#include <gtest/gtest.h>

#include <thread>

#include "common/jwt.hpp"
#include "fake_gateway.hpp"

using namespace imgate::client;
using imgate::test::fake_gateway;
namespace proto = imgate::proto;
namespace asio = boost::asio;

namespace {

// A fake gateway on its own thread, so the command under test can run its own io_context.
struct threaded_fake {
    asio::io_context io;
    fake_gateway gw{io};
    std::thread t;
    void start() {
        t = std::thread([this] { io.run_for(std::chrono::seconds(20)); });
    }
    ~threaded_fake() {
        asio::post(io, [this] {
            gw.stop();
            io.stop();
        });
        if (t.joinable()) t.join();
    }
};

send_args to_bob(uint16_t port) {
    send_args a;
    a.s.gateway = "127.0.0.1:" + std::to_string(port);
    a.s.token = imgate::jwt::sign({"alice", "cli", imgate::jwt::now_seconds() + 60}, "s", 0);
    a.to = "bob";
    a.text = "hi";
    a.timeout = "5s";
    return a;
}

}  // namespace

TEST(SendCommand, DeliveredWithReceiptExitsZero) {
    threaded_fake f;
    f.start();
    auto a = to_bob(f.gw.port());
    a.wait_receipt = "2s";
    EXPECT_EQ(run_send(a), exit_delivered);
}

TEST(SendCommand, MissingReceiptExitsThree) {
    threaded_fake f;
    f.gw.send_receipts = false;
    f.start();
    auto a = to_bob(f.gw.port());
    a.wait_receipt = "200ms";
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(run_send(a), exit_receipts_missing);
    // The receipt wait, not the overall --timeout, ended it.
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(4));
}

TEST(SendCommand, OfflineExitsTwoAndErrorsExitOne) {
    {
        threaded_fake f;
        f.gw.send_status = proto::code::offline;
        f.start();
        EXPECT_EQ(run_send(to_bob(f.gw.port())), exit_offline);
    }
    {
        threaded_fake f;
        f.gw.send_status = proto::code::rate_limited;
        f.start();
        EXPECT_EQ(run_send(to_bob(f.gw.port())), exit_error);
    }
}

TEST(SendCommand, RejectsBadArgumentsBeforeConnecting) {
    auto a = to_bob(1);
    a.room = "r";  // both --to and --room
    EXPECT_EQ(run_send(a), exit_error);
    auto b = to_bob(1);
    b.text.clear();
    EXPECT_EQ(run_send(b), exit_error);
    auto c = to_bob(1);
    c.s.token = "not-a-jwt";
    EXPECT_EQ(run_send(c), exit_error);
}

TEST(TokenSubject, ReadsSubWithoutVerifying) {
    auto t = imgate::jwt::sign({"carol", "", 4102444800}, "whatever", 0);
    EXPECT_EQ(token_subject(t), "carol");
    EXPECT_FALSE(token_subject("a.b"));
    EXPECT_FALSE(token_subject("x.eyJmb28iOjF9.y"));  // {"foo":1}: no sub
}

TEST(SessionToken, MintsFromTheSecretFileAndValidatesIds) {
    auto path = testing::TempDir() + "/imgate-client-secret";
    {
        FILE* f = std::fopen(path.c_str(), "w");
        std::fputs("0123456789abcdef0123456789abcdef\n", f);
        std::fclose(f);
    }
    session_args a;
    a.user = "alice";
    a.device = "phone";
    a.secret_file = path;
    a.ttl = "10m";
    std::string err;
    auto t = session_token(a, &err);
    ASSERT_TRUE(t) << err;
    auto v =
        imgate::jwt::verify(*t, {"0123456789abcdef0123456789abcdef"}, imgate::jwt::now_seconds());
    ASSERT_TRUE(v) << imgate::jwt::to_string(v.error);
    EXPECT_EQ(v.c.sub, "alice");
    EXPECT_EQ(v.c.dev, "phone");
    EXPECT_NEAR(double(v.c.exp - imgate::jwt::now_seconds()), 600.0, 5.0);

    a.user = "bad user";
    EXPECT_FALSE(session_token(a, &err));
    EXPECT_NE(err.find("--user"), std::string::npos);
    a.user = "alice";
    a.ttl = "0";
    EXPECT_FALSE(session_token(a, &err));
    a.ttl = "1h";
    a.secret_file = path + ".missing";
    EXPECT_FALSE(session_token(a, &err));
    EXPECT_NE(err.find("secret"), std::string::npos);
}
