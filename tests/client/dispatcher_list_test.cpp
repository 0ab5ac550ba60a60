// The dispatcher fail-over rule without sockets: parsing the --dispatcher values, where rounds
// start, which answers move on to the next URL, and what a round in which all failed says.
#include "client/dispatcher_list.hpp"

#include <gtest/gtest.h>

#include <random>

using namespace imgate::client;

namespace {

std::shared_ptr<const std::vector<http_url>> urls(std::initializer_list<const char*> list) {
    std::vector<http_url> v;
    for (auto* s : list) v.push_back(*parse_http_url(s));
    return std::make_shared<const std::vector<http_url>>(std::move(v));
}

auto three() {
    return urls({"http://10.77.0.11:8080", "http://10.77.0.12:8080", "https://disp3.example/im"});
}

// The indexes one round hands out when every URL fails with `o`.
std::vector<size_t> failing_round(dispatcher_list& l, dispatch_outcome o) {
    std::vector<size_t> order;
    l.begin_round();
    while (auto i = l.next()) {
        order.push_back(*i);
        l.report(*i, o, "x");
    }
    return order;
}

}  // namespace

TEST(DispatcherUrls, RepeatedFlagsAndCommaListsInOrderWithoutRepeats) {
    std::string err;
    auto u = parse_dispatcher_urls({"http://10.77.0.11:8080, http://10.77.0.12:8080",
                                    "https://d3.example/im/", "http://10.77.0.11:8080"},
                                   &err);
    ASSERT_TRUE(u) << err;
    ASSERT_EQ(u->size(), 3u);
    EXPECT_EQ((*u)[0].origin(), "http://10.77.0.11:8080");
    EXPECT_EQ((*u)[1].origin(), "http://10.77.0.12:8080");
    EXPECT_EQ((*u)[2].origin(), "https://d3.example:443");
    EXPECT_EQ((*u)[2].prefix, "/im");
    // One URL is just that URL.
    auto one = parse_dispatcher_urls({"http://127.0.0.1:8080"}, &err);
    ASSERT_TRUE(one);
    EXPECT_EQ(one->size(), 1u);
}

TEST(DispatcherUrls, ABadItemIsNamedAndNothingIsRefusedSilently) {
    std::string err;
    EXPECT_FALSE(parse_dispatcher_urls({"http://10.77.0.11:8080,10.77.0.12:8080"}, &err));
    EXPECT_NE(err.find("10.77.0.12:8080"), std::string::npos) << err;
    EXPECT_FALSE(parse_dispatcher_urls({",", ""}, &err));
    EXPECT_NE(err.find("expected a URL"), std::string::npos) << err;
    std::vector<std::string> many;
    for (size_t i = 0; i <= max_dispatcher_urls; ++i)
        many.push_back("http://127.0.0.1:" + std::to_string(8000 + i));
    EXPECT_FALSE(parse_dispatcher_urls(many, &err));
    many.pop_back();
    EXPECT_TRUE(parse_dispatcher_urls(many, &err)) << err;
}

TEST(DispatchOutcome, ClassifiesStatusesAndOnlyAnswersAnd4xxStopTheRound) {
    EXPECT_EQ(classify_dispatch(0, false), dispatch_outcome::transport);
    EXPECT_EQ(classify_dispatch(200, true), dispatch_outcome::answer);
    EXPECT_EQ(classify_dispatch(200, false), dispatch_outcome::bad_answer);
    EXPECT_EQ(classify_dispatch(503, false), dispatch_outcome::no_gateway);
    EXPECT_EQ(classify_dispatch(500, false), dispatch_outcome::server_error);
    EXPECT_EQ(classify_dispatch(502, false), dispatch_outcome::server_error);
    EXPECT_EQ(classify_dispatch(302, false), dispatch_outcome::server_error);
    EXPECT_EQ(classify_dispatch(400, false), dispatch_outcome::client_error);
    EXPECT_EQ(classify_dispatch(404, false), dispatch_outcome::client_error);
    EXPECT_EQ(classify_dispatch(429, false), dispatch_outcome::client_error);
    for (auto o : {dispatch_outcome::transport, dispatch_outcome::server_error,
                   dispatch_outcome::bad_answer, dispatch_outcome::no_gateway})
        EXPECT_TRUE(fails_over(o));
    EXPECT_FALSE(fails_over(dispatch_outcome::answer));
    EXPECT_FALSE(fails_over(dispatch_outcome::client_error));
}

TEST(DispatcherList, StartIsDrawnUniformlySoClientsSpread) {
    // The draw maps [0, 1] onto the indexes in equal slices; 1.0 is the last one.
    for (auto [r, want] : std::vector<std::pair<double, size_t>>{
             {0.0, 0}, {0.33, 0}, {0.34, 1}, {0.66, 1}, {0.67, 2}, {0.999, 2}, {1.0, 2}}) {
        EXPECT_EQ(dispatcher_list::draw_start(3, [r = r] { return r; }), want) << r;
    }
    EXPECT_EQ(dispatcher_list::draw_start(1, [] { return 0.9; }), 0u);
    EXPECT_EQ(dispatcher_list::draw_start(3, {}), 0u);
    // Many clients, each with its own draw: every dispatcher gets about a third.
    std::mt19937_64 gen(20261201);
    std::uniform_real_distribution<double> u(0, 1);
    std::vector<int> count(3);
    for (int c = 0; c < 3000; ++c) {
        dispatcher_list l(three(), dispatcher_list::draw_start(3, [&] { return u(gen); }));
        l.begin_round();
        ++count[*l.next()];  // the first URL this client asks
    }
    for (int n : count) {
        EXPECT_GT(n, 850);
        EXPECT_LT(n, 1150);
    }
}

TEST(DispatcherList, AfterASuccessTheNextRoundStartsAtTheSameUrl) {
    dispatcher_list l(three(), 1);
    l.begin_round();
    EXPECT_EQ(l.next(), 1u);
    EXPECT_FALSE(l.report(1, dispatch_outcome::answer, ""));
    EXPECT_EQ(l.next(), std::nullopt);  // the round is over
    EXPECT_FALSE(l.all_failed());
    // Sticky: the same URL first, round after round.
    for (int round = 0; round < 3; ++round) {
        l.begin_round();
        EXPECT_EQ(l.next(), 1u);
        l.report(1, dispatch_outcome::answer, "");
    }
    // A fail-over moves it: the URL that answered is where the next round starts.
    l.begin_round();
    EXPECT_EQ(l.next(), 1u);
    EXPECT_TRUE(l.report(1, dispatch_outcome::transport, "connection refused"));
    EXPECT_EQ(l.peek(), 2u);
    EXPECT_EQ(l.next(), 2u);
    EXPECT_FALSE(l.report(2, dispatch_outcome::answer, ""));
    EXPECT_EQ(l.current(), 2u);
    l.begin_round();
    EXPECT_EQ(l.next(), 2u);
}

TEST(DispatcherList, EveryFailureKindMovesOnInListOrderWrapping) {
    for (auto o : {dispatch_outcome::transport, dispatch_outcome::server_error,
                   dispatch_outcome::bad_answer, dispatch_outcome::no_gateway}) {
        dispatcher_list l(three(), 2);
        l.begin_round();
        EXPECT_EQ(l.next(), 2u);
        EXPECT_TRUE(l.report(2, o, "first"));
        EXPECT_EQ(l.next(), 0u);
        EXPECT_TRUE(l.report(0, o, "second"));
        EXPECT_EQ(l.next(), 1u);
        EXPECT_FALSE(l.report(1, dispatch_outcome::answer, ""));
        EXPECT_EQ(l.current(), 1u);
        EXPECT_FALSE(l.all_failed());
    }
}

TEST(DispatcherList, A4xxEndsTheRoundWithoutFailingOver) {
    dispatcher_list l(three(), 0);
    l.begin_round();
    EXPECT_EQ(l.next(), 0u);
    EXPECT_FALSE(l.report(0, dispatch_outcome::client_error, "400 bad_request"));
    EXPECT_EQ(l.next(), std::nullopt);  // nobody else is asked
    EXPECT_FALSE(l.all_failed());
    EXPECT_EQ(l.current(), 0u);
    // After a fail-over too: the 4xx ends the round at the dispatcher that said it.
    l.begin_round();
    EXPECT_EQ(l.next(), 0u);
    EXPECT_TRUE(l.report(0, dispatch_outcome::transport, "connection refused"));
    EXPECT_EQ(l.next(), 1u);
    EXPECT_FALSE(l.report(1, dispatch_outcome::client_error, "400 bad_request"));
    EXPECT_EQ(l.next(), std::nullopt);
    EXPECT_FALSE(l.all_failed());
    EXPECT_EQ(l.current(), 1u);
}

TEST(DispatcherList, AllFailedNamesEachUrlWithItsCauseInOrder) {
    dispatcher_list l(three(), 1);
    l.begin_round();
    std::vector<std::pair<dispatch_outcome, std::string>> said{
        {dispatch_outcome::transport, "connection refused"},
        {dispatch_outcome::no_gateway, "503 no_gateway_available"},
        {dispatch_outcome::transport, "connect timed out"}};
    size_t k = 0;
    while (auto i = l.next()) {
        bool more = l.report(*i, said[k].first, said[k].second);
        EXPECT_EQ(more, k < 2);
        ++k;
    }
    EXPECT_EQ(k, 3u);
    EXPECT_TRUE(l.all_failed());
    EXPECT_EQ(l.failures(),
              "http://10.77.0.12:8080 (connection refused); "
              "https://disp3.example:443/im (503 no_gateway_available); "
              "http://10.77.0.11:8080 (connect timed out)");
    // The next round starts at the first one that answered at all (the 503: it is alive).
    EXPECT_EQ(l.current(), 2u);
    l.begin_round();
    EXPECT_FALSE(l.all_failed());  // a new round forgets the last one
    EXPECT_EQ(l.next(), 2u);
}

TEST(DispatcherList, AllDeadKeepsTheStartAndOneUrlIsOneAttempt) {
    dispatcher_list l(three(), 1);
    EXPECT_EQ(failing_round(l, dispatch_outcome::transport), (std::vector<size_t>{1, 2, 0}));
    EXPECT_TRUE(l.all_failed());
    EXPECT_EQ(l.current(), 1u);
    EXPECT_EQ(failing_round(l, dispatch_outcome::transport), (std::vector<size_t>{1, 2, 0}));

    dispatcher_list one(urls({"http://127.0.0.1:8080"}), 5);  // a start out of range: 0
    EXPECT_EQ(one.current(), 0u);
    EXPECT_EQ(failing_round(one, dispatch_outcome::no_gateway), (std::vector<size_t>{0}));
    EXPECT_TRUE(one.all_failed());
    EXPECT_EQ(one.failures(), "http://127.0.0.1:8080 (x)");
}
