// peer_conn's queue: the bound, the patched correlation id, and flushing before a close; its
// reader: the frame cap before and after the handshake. The queue-bound test needs no socket;
// the others use a loopback socket.
#include "gateway/peer_conn.hpp"

#include <gtest/gtest.h>

#include "common/awaitable.hpp"
#include "common/daemon.hpp"
#include "rpc_frames.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>

using namespace imgate;
using namespace imgate::gw;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

using imgate::test::rpc_frames_of;

// Connects a peer_conn to a plain socket on loopback and hands both to the test, then reads what
// the peer_conn writes until it closes.
struct loopback {
    asio::io_context io;
    cluster_strand strand = asio::make_strand(io);
    std::shared_ptr<peer_conn> conn;
    tcp::socket far{io};

    explicit loopback(uint64_t max_queue) {
        tcp::acceptor acc(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
        conn = std::make_shared<peer_conn>(strand, max_queue);
        auto ep = acc.local_endpoint();
        auto connected = asio::co_spawn(strand, conn->connect(ep), asio::use_future);
        auto accepted = acc.async_accept(far, asio::use_future);
        io.run();
        io.restart();
        accepted.get();
        EXPECT_FALSE(connected.get());
    }

    // Everything the far end reads until the peer_conn closes its side.
    std::string read_to_eof() {
        std::string got;
        auto sink = [this, &got]() -> asio::awaitable<void> {
            auto [ec, n] = co_await asio::async_read(far, asio::dynamic_buffer(got), use_tuple);
            (void)ec;
            (void)n;
        };
        auto done = asio::co_spawn(io, sink(), asio::use_future);
        io.run();
        done.get();
        return got;
    }
};

}  // namespace

TEST(PeerConn, QueueBoundClosesASlowConsumerButNotTheSnapshot) {
    asio::io_context io;
    auto strand = asio::make_strand(io);
    peer_conn c(strand, 100);
    EXPECT_TRUE(c.send(std::string(60, 'a')));
    EXPECT_EQ(c.queued_bytes(), 60u);
    // The link-up snapshot may exceed the bound once.
    EXPECT_TRUE(c.send(std::string(200, 'b'), false));
    EXPECT_EQ(c.queued_bytes(), 260u);
    EXPECT_FALSE(c.overflowed());
    EXPECT_FALSE(c.closed());
    // Anything bounded beyond it makes the peer a slow consumer.
    EXPECT_FALSE(c.send_msg(rpc::ping_msg{}));
    EXPECT_TRUE(c.overflowed());
    EXPECT_TRUE(c.closed());
    EXPECT_FALSE(c.send(std::string(1, 'c')));
    EXPECT_FALSE(c.send_with_corr(rpc::encode(rpc::pong_msg{}), 9));
}

TEST(PeerConn, WriterSendsFramesInOrderWithPatchedCorrAndFlushesBeforeClosing) {
    loopback lb(1 << 20);
    lb.conn->start_writer();
    std::string shared = rpc::encode(rpc::forward_result_msg{proto::code::ok, 3}, 0);
    EXPECT_TRUE(lb.conn->send(rpc::encode(rpc::ping_msg{})));
    EXPECT_TRUE(lb.conn->send_with_corr(shared, 41));
    EXPECT_TRUE(lb.conn->send_with_corr(shared, 42));
    EXPECT_TRUE(lb.conn->send_msg(rpc::pong_msg{}, 7));
    lb.conn->close_when_flushed();
    EXPECT_FALSE(lb.conn->closed());  // not before the queue is written

    auto frames = rpc_frames_of(lb.read_to_eof());
    ASSERT_EQ(frames.size(), 4u);
    EXPECT_EQ(frames[0].op, static_cast<uint8_t>(rpc::op::ping));
    EXPECT_EQ(frames[1].corr, 41u);
    EXPECT_EQ(frames[2].corr, 42u);
    auto r = rpc::decode<rpc::forward_result_msg>(frames[2]);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->reached, 3u);
    EXPECT_EQ(frames[3].op, static_cast<uint8_t>(rpc::op::pong));
    EXPECT_EQ(frames[3].corr, 7u);
    EXPECT_TRUE(lb.conn->closed());
}

namespace {

// Writes `bytes` from the far end and runs read_frames() until it ends (or the far end closes);
// returns how it ended and the frames it handed over.
std::pair<read_end, std::vector<frame>> read_after(loopback& lb, std::string bytes,
                                                   size_t stop_after) {
    std::vector<frame> got;
    auto writer = [&lb, bytes = std::move(bytes)]() -> asio::awaitable<void> {
        auto [ec, n] = co_await asio::async_write(lb.far, asio::buffer(bytes), use_tuple);
        (void)ec;
        (void)n;
    };
    std::function<verdict(frame&)> h = [&got, stop_after](frame& f) {
        got.push_back(f);
        return got.size() >= stop_after ? verdict::stop : verdict::more;
    };
    auto reader = lb.conn->read_frames(h);
    auto done = asio::co_spawn(lb.strand, std::move(reader), asio::use_future);
    imgate::spawn(lb.io, writer(), "test writer");
    lb.io.run();
    lb.io.restart();
    return {done.get(), std::move(got)};
}

std::string raw_frame(uint32_t body_len, char fill = 'x') {
    std::string out;
    append_frame(out, rpc_protocol_version, static_cast<uint8_t>(rpc::op::hello), 0,
                 std::string(body_len, fill));
    return out;
}

}  // namespace

// Until the handshake completes, a frame larger than any handshake frame is refused on its
// header: a stranger cannot make the gateway buffer up to rpc::max_body.
TEST(PeerConn, BeforeTheHandshakeOnlyHandshakeSizedFramesAreRead) {
    {
        loopback lb(1 << 20);
        auto [end, frames] = read_after(lb, raw_frame(rpc::max_handshake_body), 1);
        EXPECT_EQ(end, read_end::stopped);
        ASSERT_EQ(frames.size(), 1u);
        EXPECT_EQ(frames[0].body.size(), rpc::max_handshake_body);
    }
    {
        loopback lb(1 << 20);
        // The header alone declares too much: refused before any of the body is sent.
        auto header = raw_frame(rpc::max_body).substr(0, frame_header_size);
        auto [end, frames] = read_after(lb, header, 1);
        EXPECT_EQ(end, read_end::bad_frame);
        EXPECT_TRUE(frames.empty());
    }
    {
        loopback lb(1 << 20);
        auto [end, frames] = read_after(lb, raw_frame(rpc::max_handshake_body + 1), 1);
        EXPECT_EQ(end, read_end::bad_frame);
    }
}

TEST(PeerConn, AfterTheHandshakeFramesUpToMaxBodyAreRead) {
    loopback lb(1 << 20);
    lb.conn->set_authenticated();
    auto [end, frames] =
        read_after(lb, raw_frame(rpc::max_body, 'a') + raw_frame(10, 'b') + raw_frame(10, 'c'), 3);
    EXPECT_EQ(end, read_end::stopped);
    ASSERT_EQ(frames.size(), 3u);
    EXPECT_EQ(frames[0].body, std::string(rpc::max_body, 'a'));
    // Frames behind a large one are intact (its decoder is replaced once nothing is pending).
    EXPECT_EQ(frames[1].body, std::string(10, 'b'));
    EXPECT_EQ(frames[2].body, std::string(10, 'c'));
}
