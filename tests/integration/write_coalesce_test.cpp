// timeouts.write_coalesce against the real gateway: frames queued for a session within the delay
// leave in one socket write (docs/configuration.md), and 0s writes without waiting. Clients are
// written from docs/protocol.md; the write counts come from the gateway's /metrics.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "gateway_fixture.hpp"

using namespace imgate;
using namespace imgate::test;

namespace {

const std::string sender_id = "léa.martin@example.org";
const std::string receiver_id = "zoë.ødegård@example.org";

// A burst of SENDs to receiver_id in one socket write, client ids first..last, payloads
// "msg <i> ✓".
std::string burst(int first, int last) {
    std::string bytes;
    for (int i = first; i <= last; ++i)
        bytes += proto::encode(proto::send_msg{proto::target_kind::user, receiver_id, uint64_t(i),
                                               "msg " + std::to_string(i) + " ✓"},
                               uint32_t(i));
    return bytes;
}

// Reads the SEND_RESULTs and DELIVERs of burst(first, last) in order and checks them.
void expect_burst_arrived(test_client& sender, test_client& receiver, int first, int last) {
    for (int i = first; i <= last; ++i) {
        auto r = sender.read<proto::send_result_msg>();
        ASSERT_TRUE(r) << "result " << i;
        EXPECT_EQ(r->client_msg_id, uint64_t(i));
        EXPECT_EQ(r->status, proto::code::ok);
        EXPECT_EQ(r->reached, 1u);
        auto d = receiver.read<proto::deliver_msg>();
        ASSERT_TRUE(d) << "delivery " << i;
        EXPECT_EQ(d->from_user, sender_id);
        EXPECT_EQ(d->payload, "msg " + std::to_string(i) + " ✓");
    }
}

}  // namespace

TEST(WriteCoalesce, FramesQueuedWithinTheDelayLeaveInOneWritePerSession) {
    gateway_under_test gw("", "  login_timeout: 5s\n  write_coalesce: 100ms\n");
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto sender = gw.client(sender_id, "phone");
    auto receiver = gw.client(receiver_id, "tablette");
    ASSERT_TRUE(sender && receiver);
    double writes0 = gw.metric("imgate_gateway_socket_writes_total");
    double frames0 = gw.metric("imgate_gateway_frames_written_total");
    ASSERT_GE(writes0, 2);  // the two LOGIN_RESULTs

    ASSERT_TRUE(sender->send_raw(burst(1, 10)));
    expect_burst_arrived(*sender, *receiver, 1, 10);
    // Ten SEND_RESULTs in one write to the sender, ten DELIVERs in one to the receiver: the
    // ten SENDs were read long before the flush 100 ms after the first.
    EXPECT_EQ(gw.metric("imgate_gateway_frames_written_total") - frames0, 20);
    EXPECT_EQ(gw.metric("imgate_gateway_socket_writes_total") - writes0, 2);
}

TEST(WriteCoalesce, AQuietSessionWritesAtOnceABusyOneWaitsForTheFlush) {
    gateway_under_test gw("", "  login_timeout: 5s\n  write_coalesce: 100ms\n");
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto sender = gw.client(sender_id, "phone");
    auto receiver = gw.client(receiver_id, "tablette");
    ASSERT_TRUE(sender && receiver);
    const std::string at_once = "imgate_gateway_write_starts_total{wait=\"none\"}";
    const std::string waited = "imgate_gateway_write_starts_total{wait=\"delay\"}";
    // The precondition is time itself: neither session has been written to for longer than the
    // delay (the last write carried its LOGIN_RESULT), so there is no event to wait for.
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    double at_once0 = gw.metric(at_once), waited0 = gw.metric(waited);
    ASSERT_GE(at_once0, 2);  // the LOGIN_RESULTs did not wait either
    double writes0 = gw.metric("imgate_gateway_socket_writes_total");
    double frames0 = gw.metric("imgate_gateway_frames_written_total");

    // One SEND: its SEND_RESULT and its DELIVER are each written at once.
    ASSERT_TRUE(sender->send_raw(burst(1, 1)));
    expect_burst_arrived(*sender, *receiver, 1, 1);
    EXPECT_EQ(gw.metric(at_once) - at_once0, 2);
    EXPECT_EQ(gw.metric(waited) - waited0, 0);
    EXPECT_EQ(gw.metric("imgate_gateway_socket_writes_total") - writes0, 2);
    EXPECT_EQ(gw.metric("imgate_gateway_frames_written_total") - frames0, 2);

    // Nine more at once: one more write per session carries all of them (at the next flush when
    // they arrive within 100 ms of those writes, as they do unless the machine stalls).
    ASSERT_TRUE(sender->send_raw(burst(2, 10)));
    expect_burst_arrived(*sender, *receiver, 2, 10);
    EXPECT_EQ(gw.metric(at_once) + gw.metric(waited) - at_once0 - waited0, 4);
    EXPECT_EQ(gw.metric("imgate_gateway_socket_writes_total") - writes0, 4);
    EXPECT_EQ(gw.metric("imgate_gateway_frames_written_total") - frames0, 20);
}

TEST(WriteCoalesce, ZeroWritesAfterTheBatchWithoutWaiting) {
    gateway_under_test gw("", "  login_timeout: 5s\n  write_coalesce: 0s\n");
    ASSERT_TRUE(gw.ready()) << gw.proc->log();
    auto sender = gw.client(sender_id, "phone");
    auto receiver = gw.client(receiver_id, "tablette");
    ASSERT_TRUE(sender && receiver);
    double frames0 = gw.metric("imgate_gateway_frames_written_total");
    ASSERT_TRUE(sender->send_raw(burst(1, 10)));
    expect_burst_arrived(*sender, *receiver, 1, 10);
    EXPECT_EQ(gw.metric("imgate_gateway_frames_written_total") - frames0, 20);
}

TEST(WriteCoalesce, OutOfRangeDelayIsAClearConfigError) {
    temp_dir dir;
    auto config = write_gateway_config(dir, "", "  write_coalesce: 2s\n");
    auto [code, out] = run_command(binary_path("imgate-gateway") + " --config " + config +
                                   " --id gwt --check-config");
    EXPECT_NE(code, 0);
    EXPECT_NE(out.find("write_coalesce: must be between 0s and 100ms"), std::string::npos) << out;
}
