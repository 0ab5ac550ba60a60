// Writes the committed seed corpora (tests/fuzz/corpus/<target>/) from the real encoders, so the
// fuzzers start from valid frames of every op, real tokens, real fleet files and real queries.
// Deterministic: re-running it rewrites the same files. Usage: fuzz_corpus_gen <corpus dir>.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>

#include "common/frame.hpp"
#include "common/jwt.hpp"
#include "fuzz_support.hpp"
#include "gateway/rpc_handshake.hpp"
#include "gateway/rpc_wire.hpp"
#include "messages.hpp"

// The generator links no fuzz target; satisfy fuzz_support.hpp's declaration.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) {
    return 0;
}

using namespace imgate;
namespace fs = std::filesystem;

namespace {

fs::path root;

void put(const std::string& target, const std::string& name, const std::string& bytes) {
    fs::create_directories(root / target);
    std::ofstream(root / target / name, std::ios::binary | std::ios::trunc) << bytes;
}

// A sample message: strings and numbers derived from `variant` so each type has distinct seeds.
template <class M>
M sample(int variant) {
    M m;
    int i = 0;
    fuzz::fields(m, [&](auto& x) {
        using T = std::decay_t<decltype(x)>;
        ++i;
        if constexpr (std::is_same_v<T, std::string>) {
            static const char* words[] = {"alice", "phone-1", "room-42", "hello, world", ""};
            x = variant == 0 ? words[i % 5] : std::string(static_cast<size_t>(i * 7), 'x');
        } else if constexpr (std::is_same_v<T, proto::target_kind>) {
            x = variant ? proto::target_kind::room : proto::target_kind::user;
        } else if constexpr (std::is_same_v<T, proto::code>) {
            x = variant ? proto::code::rate_limited : proto::code::ok;
        } else if constexpr (std::is_same_v<T, proto::kick_reason>) {
            x = variant ? proto::kick_reason::shutdown : proto::kick_reason::replaced;
        } else {
            x = static_cast<T>(variant ? ~T(0) - T(i) : T(i * 1000));
        }
    });
    return m;
}

std::string body_of(uint8_t op, int variant) {
    std::string body;
    fuzz::with_op(op, [&](auto tag) {
        byte_writer w(body);
        proto::write_body(w, sample<decltype(tag)>(variant));
    });
    return body;
}

std::string frame_of(uint8_t op, int variant, uint32_t corr) {
    std::string out;
    append_frame(out, client_protocol_version, op, corr, body_of(op, variant));
    return out;
}

void frame_decoder_seeds() {
    // [config][n][sizes][stream]
    auto seed = [](uint8_t config, std::string sizes, const std::string& stream) {
        std::string s;
        s += static_cast<char>(config);
        s += static_cast<char>(sizes.size() - 1);
        return s + sizes + stream;
    };
    std::string all;
    for (size_t i = 0; i < std::tuple_size_v<fuzz::all_messages>; ++i) {
        uint8_t op = fuzz::nth_op(i);
        std::string f = frame_of(op, 0, static_cast<uint32_t>(i + 1));
        all += f;
        put("frame_decoder", std::string("op-") + proto::to_string(static_cast<proto::op>(op)),
            seed(0, std::string("\x00", 1), f));
    }
    put("frame_decoder", "all-ops-bytewise", seed(0, "\x01", all));
    put("frame_decoder", "all-ops-chunks-3-7-64", seed(0, "\x03\x07\x40", all));
    std::string big_frames = frame_of(static_cast<uint8_t>(proto::op::send), 1, 9) +
                             frame_of(static_cast<uint8_t>(proto::op::deliver), 1, 10);
    put("frame_decoder", "variant1-max16", seed(2, "\x05", big_frames));
    // A header declaring a 4 GiB body; a bad version; an RPC-version stream; a truncated frame.
    std::string huge = std::string("\xff\xff\xff\xff\x01\x10\x00\x00\x00\x00\x00\x01", 12);
    put("frame_decoder", "declares-4GiB", seed(0, "\x02", huge + "abc"));
    std::string badver = frame_of(1, 0, 1);
    badver[4] = 9;
    put("frame_decoder", "bad-version", seed(0, "\x04", badver));
    std::string rpc;
    append_frame(rpc, rpc_protocol_version, 0x01, 7, std::string("\x00\x03gw1", 5));
    append_frame(rpc, rpc_protocol_version, 0x06, 8, "");
    put("frame_decoder", "rpc-version", seed(4, "\x06", rpc));
    put("frame_decoder", "truncated", seed(0, "\x00", all.substr(0, all.size() - 5)));
}

void message_bodies_seeds() {
    for (size_t i = 0; i < std::tuple_size_v<fuzz::all_messages>; ++i) {
        uint8_t op = fuzz::nth_op(i);
        for (int v = 0; v < 2; ++v) {
            std::string name =
                std::string(proto::to_string(static_cast<proto::op>(op))) + "-" + std::to_string(v);
            std::string seed(1, static_cast<char>(i));
            seed.append(body_of(op, v));
            put("message_bodies", name, seed);
        }
    }
}

void roundtrip_seeds() {
    std::mt19937 rng(20261128);
    for (int n = 0; n < 12; ++n) {
        std::string s;
        size_t len = 16 + rng() % 400;
        for (size_t i = 0; i < len; ++i) s += static_cast<char>(rng());
        put("roundtrip", "random-" + std::to_string(n), s);
    }
    // Every type once, short strings: [chunk][ (type, corr(4), fields...) ]...
    std::string s(1, '\x05');
    for (size_t i = 0; i < 16; ++i)
        s +=
            std::string(1, char(i)) + "\x00\x00\x00\x07" + "\x03" + "abc" + std::string(24, '\x01');
    put("roundtrip", "each-type", s);
}

void jwt_seeds() {
    const std::string cur = "fuzz-current-secret-0123456789abcdef";
    const std::string prev = "fuzz-previous-secret-0123456789abcdef";
    const int64_t now = 1800000000;
    auto mode0 = [&](const std::string& name, const std::string& tok) {
        put("jwt_verify", name, std::string(1, '\x00') + tok);
    };
    mode0("valid-current", jwt::sign({"alice", "phone", now + 3600}, cur, now));
    mode0("valid-previous", jwt::sign({"bob", "", now + 60}, prev, now));
    mode0("expired", jwt::sign({"alice", "", now - 1}, cur, now - 100));
    mode0("wrong-secret", jwt::sign({"mallory", "", now + 3600}, "guess", now));
    auto raw = [&](const std::string& h, const std::string& p, const std::string& sig) {
        return jwt::base64url_encode(h) + "." + jwt::base64url_encode(p) + "." + sig;
    };
    mode0("alg-none",
          raw(R"({"alg":"none","typ":"JWT"})", R"({"sub":"root","exp":1900000000})", ""));
    mode0("alg-hs512", raw(R"({"alg":"HS512"})", R"({"sub":"x","exp":1900000000})", "AAAA"));
    mode0("two-parts", "abc.def");
    mode0("bad-base64", "a+b.c/d.e=f");
    // Mode 1: header / payload JSON signed with current(0) / previous(1) / attacker(2).
    auto mode1 = [&](const std::string& name, char which, const std::string& h,
                     const std::string& p) {
        std::string s(1, '\x01');
        s += which;
        s += static_cast<char>(h.size() >> 8);
        s += static_cast<char>(h.size() & 0xff);
        put("jwt_verify", name, s + h + p);
    };
    const std::string hs = R"({"alg":"HS256","typ":"JWT"})";
    mode1("m1-valid", 0, hs, R"({"sub":"alice","dev":"d1","exp":1900000000})");
    mode1("m1-previous", 1, hs, R"({"sub":"alice","exp":1800000100})");
    mode1("m1-attacker", 2, hs, R"({"sub":"alice","exp":1900000000})");
    mode1("m1-float-exp", 0, hs, R"({"sub":"alice","exp":1.9e9})");
    mode1("m1-huge-exp", 0, hs, R"({"sub":"alice","exp":1e300})");
    mode1("m1-u64-exp", 0, hs, R"({"sub":"alice","exp":18446744073709551615})");
    mode1("m1-neg-exp", 0, hs, R"({"sub":"alice","exp":-9223372036854775808})");
    mode1("m1-nbf-future", 0, hs, R"({"sub":"alice","exp":1900000000,"nbf":1850000000})");
    mode1("m1-dev-number", 0, hs, R"({"sub":"alice","exp":1900000000,"dev":5})");
    mode1("m1-no-sub", 0, hs, R"({"exp":1900000000})");
    mode1("m1-alg-none", 0, R"({"alg":"none"})", R"({"sub":"alice","exp":1900000000})");
    mode1("m1-array", 0, "[]", "{}");
    // Mode 2: [sub str][dev str][exp delta u32].
    put("jwt_verify", "m2-mint",
        std::string("\x02\x05"
                    "alice"
                    "\x02"
                    "d1"
                    "\x00\x00\x0e\x10",
                    14));
    put("jwt_verify", "m2-expired",
        std::string("\x82\x03"
                    "bob"
                    "\x00"
                    "\xff\xff\xff\xf0",
                    10));
}

void query_seeds() {
    auto q = [](const std::string& name, const std::string& s) {
        put("query", name, std::string(1, '\x1f') + s);
    };
    q("get-tcp-ip", "uid=alice&region=eu&exclude=gw1,gw2");
    q("encoded", "uid=al%20ice%2Bx&dev=phone+1&region=local");
    q("bad-percent", "uid=%zz&x=%4");
    q("repeated", "uid=a&uid=b");
    q("empty-key", "=v&&k=");
    q("many",
      "a=1&b=2&c=3&d=4&e=5&f=6&g=7&h=8&i=9&j=10&k=11&l=12&m=13&n=14&o=15&p=16&q=17&"
      "r=18&s=19&t=20&u=21&v=22&w=23&x=24&y=25&z=26&aa=27&ab=28&ac=29&ad=30&ae=31&af=32&"
      "ag=33");
    q("utf8", "uid=%E7%94%A8%E6%88%B7&region=%00");
}

void yaml_seeds(const fs::path& source_dir) {
    std::ifstream in(source_dir / "config/local/fleet.yaml");
    std::string fleet((std::istreambuf_iterator<char>(in)), {});
    put("yaml_config", "local-fleet.yaml", fleet);
    put("yaml_config", "minimal.yaml",
        "gateways:\n  - {id: a, client: '127.0.0.1:1', admin: '127.0.0.1:2', rpc: '[::1]:3'}\n");
    put("yaml_config", "duplicate-id.yaml",
        "gateways:\n  - {id: a, client: 'h:1', admin: 'h:2', rpc: 'h:3'}\n"
        "  - {id: a, client: 'h:4', admin: 'h:5', rpc: 'h:6'}\n");
    put("yaml_config", "unknown-key.yaml",
        "gateways:\n  - {id: a, client: 'h:1', admin: 'h:2', rpc: 'h:3', wieght: 5}\n");
    put("yaml_config", "bad-types.yaml",
        "cluster: [1, 2]\ngateways:\n  - {id: [x], client: 99999999, admin: 'h:-1', rpc: 'h'}\n");
    put("yaml_config", "sections.yaml",
        "log: {level: debug, format: json}\n"
        "cluster_rpc: {call_timeout: 2s, connect_timeout: 250ms, ping_interval: 5000, "
        "backoff_min: 1m, backoff_max: 1h, max_in_flight: 10, max_queue_bytes: 65536}\n"
        "gateways: []\n");
    put("yaml_config", "anchors.yaml",
        "base: &b {client: 'h:1', admin: 'h:2', rpc: 'h:3'}\ngateways:\n  - <<: *b\n    id: x\n");
}

std::string slurp(const fs::path& p) {
    std::ifstream in(p);
    return std::string((std::istreambuf_iterator<char>(in)), {});
}

void rpc_seeds() {
    using namespace imgate::gw;
    auto body = [](const auto& m) {
        std::string b;
        byte_writer w(b);
        rpc::write_body(w, m);
        return b;
    };
    auto mode0 = [&](const std::string& name, int which, const std::string& b) {
        std::string s{'\x00', static_cast<char>(which)};
        put("rpc_decoder", name, s + b);
    };
    std::string nonce(rpc::nonce_size, 'n'), proof(rpc::proof_size, 'p');
    mode0("hello", 0, body(rpc::hello_msg{"gw1", nonce}));
    mode0("challenge", 1, body(rpc::challenge_msg{"gw2", nonce}));
    mode0("auth", 2, body(rpc::auth_msg{proof}));
    mode0("auth_ok", 3, body(rpc::auth_ok_msg{proof}));
    mode0("auth_fail", 4, body(rpc::auth_fail_msg{"bad proof"}));
    mode0("ping", 5, "");
    outbound_message om;
    om.server_msg_id = 77;
    om.kind = proto::target_kind::room;
    om.target = "room-1";
    om.from_user = "alice";
    om.from_device = "phone";
    om.ts_ms = 1800000000000;
    om.origin_gateway = "gw1";
    om.origin_session = 5;
    om.client_msg_id = 9;
    om.payload = "hello";
    mode0("forward", 7, body(rpc::forward_msg{om}));
    mode0("forward_result", 8, body(rpc::forward_result_msg{proto::code::ok, 3}));
    mode0("receipt", 9, body(rpc::receipt_msg{5, proto::receipt_msg{9, 77, "bob", "d"}}));
    rpc::presence_msg pm;
    pm.reset = true;
    pm.changes = {{true, "alice"}, {false, "bob"}};
    mode0("presence", 10, body(pm));
    rpc::room_interest_msg rm;
    rm.changes = {{true, "room-1"}};
    mode0("room_interest", 11, body(rm));
    mode0("presence-huge-count", 10, std::string("\x01\xff\xff\xff\xff", 5));
    // Mode 1: a stranger on the RPC port: [chunk][frames].
    auto mode1 = [&](const std::string& name, const std::string& frames) {
        put("rpc_decoder", name, std::string{'\x01', '\x07'} + frames);
    };
    mode1("stranger-hello-auth",
          rpc::encode(rpc::hello_msg{"gw1", nonce}) + rpc::encode(rpc::auth_msg{proof}));
    mode1("unknown-peer", rpc::encode(rpc::hello_msg{"gw9", nonce}));
    mode1("client-frame", proto::encode(proto::login_msg{"token"}));
    mode1("auth-first", rpc::encode(rpc::auth_msg{proof}));
    mode1("forward-unauthenticated", rpc::encode(rpc::forward_msg{om}, 1));
    mode1("garbage", "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    // Mode 2: [right secret][flip position u16][mask].
    put("rpc_decoder", "handshake-ok", std::string("\x02\x01\x00\x00\x00", 5));
    put("rpc_decoder", "handshake-wrong-secret", std::string("\x02\x00\x00\x00\x00", 5));
    put("rpc_decoder", "handshake-tampered", std::string("\x02\x01\x00\x14\x01", 5));
}

void dispatcher_seeds() {
    auto q = [](const std::string& name, const std::string& s) {
        put("dispatcher_input", name, std::string{'\x00', '\x7f'} + s);
    };
    q("q-uid", "uid=alice");
    q("q-all", "uid=alice&exclude=gw1,gw2&region=local");
    q("q-bad-exclude", "exclude=gw1,,x");
    q("q-trailing-comma", "exclude=gw1,");
    q("q-control", "uid=a%01b");
    q("q-unknown", "foo=bar");
    q("q-long", "uid=" + std::string(200, 'u'));
    auto st = [](const std::string& name, const std::string& s) {
        put("dispatcher_input", name, std::string{'\x01', '\x00'} + s);
    };
    st("status-ok", R"({"id":"gw1","state":"serving","connections":10,"max_connections":100,)"
                    R"("sessions":9,"full":false,"load":0.1,"pid":42,"version":"0.1.0",)"
                    R"("uptime_s":12.5})");
    st("status-bad-load",
       R"({"id":"gw1","state":"serving","connections":1,"max_connections":1,)"
       R"("sessions":1,"full":true,"load":1e309,"pid":1,"version":"x","uptime_s":-1})");
    st("status-missing", R"({"id":"gw1"})");
    st("status-array", "[1,2,3]");
}

void config_seeds(const fs::path& source_dir) {
    put("yaml_config", "local-dispatcher.yaml", slurp(source_dir / "config/local/dispatcher.yaml"));
    put("yaml_config", "etc-dispatcher.yaml", slurp(source_dir / "config/etc/dispatcher.yaml"));
    put("gateway_config", "local-gateway.yaml", slurp(source_dir / "config/local/gateway.yaml"));
    put("gateway_config", "minimal.yaml",
        "id: gw1\nfleet: fleet.yaml\nauth: {secret_files: [token.secret, old.secret]}\n");
    put("gateway_config", "limits.yaml",
        "id: gw2\nfleet: fleet.yaml\nauth: {secret_files: [token.secret], leeway: 30s}\n"
        "admin: {token_file: admin.token}\n"
        "limits: {max_frame_bytes: 256, max_payload_bytes: 300, max_connections: 1}\n"
        "timeouts: {heartbeat_interval: 2s, idle_timeout: 1s}\n");
    put("gateway_config", "bad-secret.yaml",
        "id: gw1\nfleet: fleet.yaml\nauth: {secret_files: [empty.secret, missing.secret]}\n");
    put("gateway_config", "unknown-id.yaml",
        "id: gw9\nfleet: fleet.yaml\nauth: {secret_files: [token.secret]}\n");
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: fuzz_corpus_gen <tests/fuzz/corpus>\n";
        return 2;
    }
    root = argv[1];
    frame_decoder_seeds();
    message_bodies_seeds();
    roundtrip_seeds();
    jwt_seeds();
    query_seeds();
    // <source>/tests/fuzz/corpus -> <source>
    fs::path source_dir = fs::weakly_canonical(root / ".." / ".." / "..");
    yaml_seeds(source_dir);
    rpc_seeds();
    dispatcher_seeds();
    config_seeds(source_dir);
    std::cout << "corpus written to " << root << "\n";
    return 0;
}
