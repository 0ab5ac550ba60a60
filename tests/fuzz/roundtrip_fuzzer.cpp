// Fuzz target: encode -> decode round trip. Builds a sequence of messages of every type with
// field values taken from the fuzzer's bytes (valid enums only), encodes them back to back into
// one stream, decodes it in fuzzer-chosen chunks and requires every message to come back equal,
// in order, with its correlation id. Also checks that the encoder rejects nothing it produced.
#include <vector>

#include "common/frame.hpp"
#include "fuzz_support.hpp"
#include "messages.hpp"

using namespace imgate;

namespace {

constexpr proto::code valid_codes[] = {proto::code::ok,
                                       proto::code::offline,
                                       proto::code::bad_frame,
                                       proto::code::unsupported_version,
                                       proto::code::unknown_op,
                                       proto::code::frame_too_large,
                                       proto::code::bad_request,
                                       proto::code::login_required,
                                       proto::code::auth_failed,
                                       proto::code::token_expired,
                                       proto::code::login_timeout,
                                       proto::code::already_logged_in,
                                       proto::code::rate_limited,
                                       proto::code::payload_too_large,
                                       proto::code::server_busy,
                                       proto::code::slow_consumer,
                                       proto::code::not_in_room,
                                       proto::code::too_many_rooms,
                                       proto::code::unavailable,
                                       proto::code::timeout,
                                       proto::code::internal,
                                       proto::code::draining};

template <class M>
M build(fuzz::byte_source& in) {
    M m;
    fuzz::fields(m, [&](auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>) {
            x = in.str(600);
        } else if constexpr (std::is_same_v<T, proto::target_kind>) {
            x = in.flag() ? proto::target_kind::room : proto::target_kind::user;
        } else if constexpr (std::is_same_v<T, proto::code>) {
            x = valid_codes[in.u8() % std::size(valid_codes)];
        } else if constexpr (std::is_same_v<T, proto::kick_reason>) {
            x = static_cast<proto::kick_reason>(in.u8() % 6 + 1);
        } else if constexpr (sizeof(T) == 1) {
            x = in.u8();
        } else if constexpr (sizeof(T) == 2) {
            x = in.u16();
        } else if constexpr (sizeof(T) == 4) {
            x = in.u32();
        } else {
            x = in.u64();
        }
    });
    return m;
}

struct sent {
    uint8_t op;
    uint32_t corr;
    std::vector<std::string> fields;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::byte_source in(data, size);
    size_t chunk = in.u8() % 64 + 1;
    std::string stream;
    std::vector<sent> expect;
    for (int i = 0; i < 16 && !in.empty(); ++i) {
        uint8_t op = fuzz::nth_op(in.u8());
        uint32_t corr = in.u32();
        fuzz::with_op(op, [&](auto tag) {
            using M = decltype(tag);
            M m = build<M>(in);
            proto::encode(stream, m, corr);
            expect.push_back({op, corr, fuzz::dump(m)});
        });
    }

    frame_decoder d(absolute_max_frame_body);
    size_t got = 0;
    for (size_t off = 0; off <= stream.size(); off += chunk) {
        d.feed(std::string_view(stream).substr(off, chunk));
        while (auto f = d.next()) {
            FUZZ_CHECK(got < expect.size());
            const sent& s = expect[got++];
            FUZZ_CHECK(f->op == s.op && f->corr == s.corr && f->flags == 0);
            bool matched = false;
            fuzz::with_op(f->op, [&](auto tag) {
                using M = decltype(tag);
                auto m = proto::decode<M>(*f);
                FUZZ_CHECK(m.has_value());
                FUZZ_CHECK(fuzz::dump(*m) == s.fields);
                matched = true;
            });
            FUZZ_CHECK(matched);
        }
        FUZZ_CHECK(d.error() == frame_error::none);
    }
    FUZZ_CHECK(got == expect.size());
    FUZZ_CHECK(d.buffered() == 0);
    return 0;
}
