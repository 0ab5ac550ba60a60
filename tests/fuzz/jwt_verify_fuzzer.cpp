// Fuzz target: HS256 token verification with fixed secrets and a fixed clock.
//
// Input layout: [mode][...]
//   mode 0: the rest is a token, verified as is (parsing, base64url, JSON, alg checks).
//   mode 1: [secret selector][header JSON (str16)][payload JSON (rest)] — signed here with the
//           current, the previous, or an attacker's secret, so the fuzzer gets past the HMAC and
//           reaches the claim checks.
//   mode 2: claims (sub, dev, exp) minted with jwt::sign and verified back.
// Invariants: no token signed with a secret outside the list verifies; a token with a flipped
// signature byte never verifies; a verified token always has a sub (and dev, when not empty)
// within the id rule, a header without crit and exp beyond the clock; a minted token verifies iff
// its claims are valid.
#include <nlohmann/json.hpp>

#include "common/ids.hpp"
#include "common/jwt.hpp"
#include "fuzz_support.hpp"

using namespace imgate;

namespace {

const std::vector<std::string> secrets{"fuzz-current-secret-0123456789abcdef",
                                       "fuzz-previous-secret-0123456789abcdef"};
const std::string attacker = "not-a-configured-secret";
constexpr int64_t now = 1800000000;  // 2027-01-15

void check_ok(const jwt::verify_result& r, int64_t leeway) {
    if (!r) return;
    FUZZ_CHECK(ids::valid(r.c.sub));
    FUZZ_CHECK(r.c.dev.empty() || ids::valid(r.c.dev));
    FUZZ_CHECK(r.c.exp > now - leeway);
}

std::string forge(const std::string& header, const std::string& payload, const std::string& key) {
    std::string input = jwt::base64url_encode(header) + "." + jwt::base64url_encode(payload);
    return input + "." + jwt::base64url_encode(jwt::hmac_sha256(key, input));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::byte_source in(data, size);
    uint8_t mode = in.u8();
    int64_t leeway = (mode & 0x80) ? 30 : 0;
    switch (mode % 3) {
        case 0: {
            std::string token(in.rest());
            auto r = jwt::verify(token, secrets, now, leeway);
            check_ok(r, leeway);
            // Verification must not depend on which configured secret is listed first.
            auto r2 = jwt::verify(token, {secrets[1], secrets[0]}, now, leeway);
            FUZZ_CHECK(r.error == r2.error);
            break;
        }
        case 1: {
            uint8_t which = in.u8() % 3;
            std::string header = in.str(1000);
            std::string payload(in.rest());
            const std::string& key = which == 2 ? attacker : secrets[which];
            std::string token = forge(header, payload, key);
            auto r = jwt::verify(token, secrets, now, leeway);
            check_ok(r, leeway);
            if (which == 2) FUZZ_CHECK(!r && r.error != jwt::verify_error::expired);
            if (r) {
                auto h = nlohmann::json::parse(header, nullptr, false);
                FUZZ_CHECK(h.is_object() && h.value("alg", "") == "HS256" && !h.contains("crit"));
                // One flipped signature character must break it.
                std::string bad = token;
                char& c = bad.back();
                c = c == 'A' ? 'B' : 'A';
                auto rb = jwt::verify(bad, secrets, now, leeway);
                FUZZ_CHECK(!rb);
                // Only the previous secret listed: tokens of the current one must fail.
                auto only_prev = jwt::verify(token, {secrets[1]}, now, leeway);
                FUZZ_CHECK(bool(only_prev) == (which == 1));
            }
            break;
        }
        default: {
            jwt::claims c;
            c.sub = in.str(80);
            c.dev = in.str(40);
            c.exp = now + static_cast<int32_t>(in.u32());
            std::string token;
            try {
                token = jwt::sign(c, secrets[0], now);
            } catch (const nlohmann::json::exception&) {
                return 0;  // sign() refuses ids that are not valid UTF-8 (JSON can't carry them)
            }
            auto r = jwt::verify(token, secrets, now, leeway);
            bool valid =
                ids::valid(c.sub) && (c.dev.empty() || ids::valid(c.dev)) && c.exp + leeway > now;
            FUZZ_CHECK(bool(r) == valid);
            if (r) FUZZ_CHECK(r.c.sub == c.sub && r.c.dev == c.dev && r.c.exp == c.exp);
            break;
        }
    }
    return 0;
}
