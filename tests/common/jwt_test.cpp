#include <gtest/gtest.h>

#include <set>

#include "common/jwt.hpp"

using namespace imgate;

TEST(Jwt, SignThenVerify) {
    auto t = jwt::sign({"alice", "phone", 2000}, "secret-secret-secret", 1000);
    auto r = jwt::verify(t, {"secret-secret-secret"}, 1500);
    ASSERT_TRUE(r) << jwt::to_string(r.error);
    EXPECT_EQ(r.c.sub, "alice");
    EXPECT_EQ(r.c.dev, "phone");
}

TEST(Jwt, KnownTokenFromAnotherLibrary) {
    // Minted with PyJWT: jwt.encode({"sub":"bob","exp":4102444800},
    // "0123456789abcdef0123456789abcdef")
    const char* tok =
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJib2IiLCJleHAiOjQxMDI0NDQ4MDB9."
        "022e1FjJvIwU9Vl8T-cNZhEWnUWy7Jn7N-NzZ3h0_C8";
    auto r = jwt::verify(tok, {"0123456789abcdef0123456789abcdef"}, 1700000000);
    ASSERT_TRUE(r) << jwt::to_string(r.error);
    EXPECT_EQ(r.c.sub, "bob");
    EXPECT_EQ(r.c.exp, 4102444800);
}

TEST(Jwt, RotationAcceptsPreviousSecret) {
    auto t = jwt::sign({"alice", "", 2000}, "old-secret-old-secret", 1000);
    EXPECT_TRUE(jwt::verify(t, {"new-secret-new-secret", "old-secret-old-secret"}, 1500));
    EXPECT_EQ(jwt::verify(t, {"new-secret-new-secret"}, 1500).error,
              jwt::verify_error::bad_signature);
}

TEST(Jwt, RejectsExpiredForgedAndAlgNone) {
    auto t = jwt::sign({"alice", "", 2000}, "secret-secret-secret", 1000);
    EXPECT_EQ(jwt::verify(t, {"secret-secret-secret"}, 2000).error, jwt::verify_error::expired);
    auto forged = t;
    forged.back() = forged.back() == 'A' ? 'B' : 'A';
    EXPECT_EQ(jwt::verify(forged, {"secret-secret-secret"}, 1500).error,
              jwt::verify_error::bad_signature);
    std::string none = jwt::base64url_encode(R"({"alg":"none"})") + "." +
                       jwt::base64url_encode(R"({"sub":"x","exp":99999999999})") + ".";
    EXPECT_EQ(jwt::verify(none, {"secret-secret-secret"}, 1500).error,
              jwt::verify_error::bad_algorithm);
    std::string hs512 = jwt::base64url_encode(R"({"alg":"HS512"})") + "." +
                        jwt::base64url_encode(R"({"sub":"x","exp":99999999999})") + ".AAAA";
    EXPECT_EQ(jwt::verify(hs512, {"secret-secret-secret"}, 1500).error,
              jwt::verify_error::bad_algorithm);
    EXPECT_EQ(jwt::verify("a.b", {"s"}, 0).error, jwt::verify_error::malformed);
    EXPECT_EQ(jwt::verify("a.b.c.d", {"s"}, 0).error, jwt::verify_error::malformed);
    EXPECT_EQ(jwt::verify("!!.??.==", {"s"}, 0).error, jwt::verify_error::malformed);
}

TEST(Jwt, MissingClaims) {
    std::string secret = "secret-secret-secret";
    std::string input =
        jwt::base64url_encode(R"({"alg":"HS256"})") + "." + jwt::base64url_encode(R"({"sub":"x"})");
    std::string t = input + "." + jwt::base64url_encode(jwt::hmac_sha256(secret, input));
    EXPECT_EQ(jwt::verify(t, {secret}, 0).error, jwt::verify_error::missing_claim);
}

TEST(Jwt, Base64UrlRoundTrip) {
    for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar", "\xff\xfe\x00"}) {
        auto e = jwt::base64url_encode(s);
        auto d = jwt::base64url_decode(e);
        ASSERT_TRUE(d);
        EXPECT_EQ(*d, s);
    }
    EXPECT_FALSE(jwt::base64url_decode("a"));
    EXPECT_FALSE(jwt::base64url_decode("ab=="));
}

// "Zg" is the only spelling of "f": "Zh".."Zv" differ in bits that carry no data. Accepting them
// would give every signature several valid spellings (found by the jwt_verify fuzzer).
TEST(Jwt, NonCanonicalBase64IsRefused) {
    EXPECT_EQ(jwt::base64url_decode("Zg"), std::optional<std::string>("f"));
    EXPECT_FALSE(jwt::base64url_decode("Zh"));
    EXPECT_FALSE(jwt::base64url_decode("Zm9"));  // "fo" is "Zm8"
    EXPECT_EQ(jwt::base64url_decode("Zm8"), std::optional<std::string>("fo"));

    const std::string secret = "s3cret";
    jwt::claims c;
    c.sub = "alice";
    c.exp = 4102444800;
    std::string t = jwt::sign(c, secret, 0);
    ASSERT_TRUE(jwt::verify(t, {secret}, 0));
    // A signature of 32 bytes is 43 characters; the last one carries 4 data bits and 2 unused.
    const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    auto v = alphabet.find(t.back());
    ASSERT_NE(v, std::string::npos);
    ASSERT_EQ(v % 4, 0u) << "the signer must emit the canonical spelling";
    for (size_t unused = 1; unused < 4; ++unused) {
        std::string forged = t;
        forged.back() = alphabet[v + unused];  // same data bits
        EXPECT_EQ(jwt::verify(forged, {secret}, 0).error, jwt::verify_error::malformed) << forged;
    }
}

// exp values that do not fit the leeway arithmetic (1e300, 2^64-1, INT64_MIN) are refused as an
// invalid claim instead of overflowing (found by tests/fuzz jwt_verify under UBSan).
TEST(Jwt, OutOfRangeExpIsAnInvalidClaim) {
    const std::string secret = "s3cret";
    auto make = [&](const std::string& exp) {
        std::string in = jwt::base64url_encode(R"({"alg":"HS256"})") + "." +
                         jwt::base64url_encode(R"({"sub":"a","exp":)" + exp + "}");
        return in + "." + jwt::base64url_encode(jwt::hmac_sha256(secret, in));
    };
    for (auto exp :
         {"1e300", "-1e300", "18446744073709551615", "-9223372036854775808", "4611686018427387904"})
        EXPECT_EQ(jwt::verify(make(exp), {secret}, 1000, 30).error,
                  jwt::verify_error::missing_claim)
            << exp;
    // Large but in range: a valid far-future token.
    EXPECT_TRUE(jwt::verify(make("4611686018427387903"), {secret}, 1000, 30));
    EXPECT_TRUE(jwt::verify(make("1.9e9"), {secret}, 1000, 30));
}

namespace {

// A token with exactly this header and payload text, signed with `secret`: the tests below need
// spellings jwt::sign never produces (repeated names, crit, string nbf).
std::string forge(const std::string& header, const std::string& payload,
                  const std::string& secret) {
    std::string in = jwt::base64url_encode(header) + "." + jwt::base64url_encode(payload);
    return in + "." + jwt::base64url_encode(jwt::hmac_sha256(secret, in));
}

const std::string strict_secret = "strict-secret-0123456789abcdef";
constexpr int64_t strict_now = 1800000000;
const std::string good_claims = R"({"sub":"zoë@example.com","dev":"phone","exp":1800003600})";

// Claims with sub and dev written raw (UTF-8 in the JSON text, no escapes).
std::string claims_with(const std::string& sub, const std::string& dev) {
    return R"({"sub":")" + sub + R"(","dev":")" + dev + R"(","exp":1800003600})";
}

jwt::verify_error verify_forged(const std::string& header, const std::string& payload) {
    return jwt::verify(forge(header, payload, strict_secret), {strict_secret}, strict_now, 30)
        .error;
}

}  // namespace

// The forge() baseline verifies, so every refusal below is caused by the one thing it changes.
TEST(JwtStrict, BaselineForgedTokenVerifies) {
    auto r = jwt::verify(forge(R"({"alg":"HS256","typ":"JWT"})", good_claims, strict_secret),
                         {strict_secret}, strict_now, 30);
    ASSERT_TRUE(r) << jwt::to_string(r.error);
    EXPECT_EQ(r.c.sub, "zoë@example.com");
    EXPECT_EQ(r.c.dev, "phone");
}

// RFC 7515 §4.1.11: a recipient that does not understand a listed extension must refuse.
TEST(JwtStrict, AnyCritHeaderIsRefused) {
    for (const char* h :
         {R"({"alg":"HS256","crit":["exp"]})", R"({"alg":"HS256","crit":["b64"],"b64":false})",
          R"({"alg":"HS256","crit":[]})", R"({"crit":"x","alg":"HS256"})"})
        EXPECT_EQ(verify_forged(h, good_claims), jwt::verify_error::unsupported_crit) << h;
    EXPECT_STREQ(jwt::to_string(jwt::verify_error::unsupported_crit),
                 "unsupported critical header parameter (crit)");
}

// {"alg":"none","alg":"HS256"} means HS256 to nlohmann (last wins) and none to a first-wins
// parser: refused whatever the order, in the header, the claims and nested objects.
TEST(JwtStrict, DuplicateMemberNamesAreRefused) {
    EXPECT_EQ(verify_forged(R"({"alg":"none","alg":"HS256"})", good_claims),
              jwt::verify_error::duplicate_member);
    EXPECT_EQ(verify_forged(R"({"alg":"HS256","alg":"HS256"})", good_claims),
              jwt::verify_error::duplicate_member);
    EXPECT_EQ(verify_forged(
                  R"({"alg":"HS256"})",
                  R"({"sub":"mallory@example.com","exp":1800003600,"sub":"alice@example.com"})"),
              jwt::verify_error::duplicate_member);
    EXPECT_EQ(verify_forged(R"({"alg":"HS256"})",
                            R"({"sub":"a@example.com","exp":1800003600,"x":{"k":1,"k":2}})"),
              jwt::verify_error::duplicate_member);
    // The same name in sibling or nested objects is not a repeat.
    EXPECT_EQ(
        verify_forged(
            R"({"alg":"HS256","x":{"alg":1}})",
            R"({"sub":"a@example.com","exp":1800003600,"o":[{"k":1},{"k":2}],"p":{"sub":3}})"),
        jwt::verify_error::none);
}

// A present nbf/iat/exp must be a number of seconds in range: a skipped nbf made a token valid
// before its time.
TEST(JwtStrict, TimeClaimsOfTheWrongTypeAreRefused) {
    const std::string h = R"({"alg":"HS256"})";
    auto claims = [](const std::string& extra) {
        return R"({"sub":"王伟","exp":1800003600,)" + extra + "}";
    };
    for (const char* extra :
         {R"("nbf":"1900000000")", R"("nbf":null)", R"("nbf":true)", R"("nbf":[1])", R"("nbf":{})",
          R"("nbf":1e300)", R"("iat":"yesterday")", R"("iat":-1e19)",
          R"("iat":18446744073709551615)"})
        EXPECT_EQ(verify_forged(h, claims(extra)), jwt::verify_error::bad_time_claim) << extra;
    EXPECT_EQ(verify_forged(h, R"({"sub":"王伟","exp":"1900000000"})"),
              jwt::verify_error::missing_claim);
    // Numbers still work, fractional ones included (RFC 7519 NumericDate).
    EXPECT_EQ(verify_forged(h, claims(R"("nbf":1799999000,"iat":1799999000.5)")),
              jwt::verify_error::none);
    EXPECT_EQ(verify_forged(h, claims(R"("nbf":1800000100)")), jwt::verify_error::not_yet_valid);
    // A fractional nbf is not rounded down into validity: 30 s leeway, nbf 30.5 s ahead.
    EXPECT_EQ(verify_forged(h, claims(R"("nbf":1800000030.5)")), jwt::verify_error::not_yet_valid);
}

// U+202E (right-to-left override) and U+2066 (left-to-right isolate) can make one user id look
// like another; the id rule refuses them in sub and dev.
TEST(JwtStrict, SubAndDevFollowTheIdRule) {
    const std::string h = R"({"alg":"HS256"})";
    for (const char* bad : {"alice\u202E@example.com", "\u2066alice@example.com", "al ice",
                            "ali\u200bce", "bob\u2069"}) {
        auto sub = claims_with(bad, "phone");
        EXPECT_EQ(verify_forged(h, sub), jwt::verify_error::bad_identity) << bad;
        auto dev = claims_with("alice@example.com", bad);
        EXPECT_EQ(verify_forged(h, dev), jwt::verify_error::bad_identity) << bad;
    }
    // The same characters reached through JSON escapes are refused as well.
    EXPECT_EQ(verify_forged(h, R"({"sub":"alice\u202e@example.com","exp":1800003600})"),
              jwt::verify_error::bad_identity);
    EXPECT_EQ(verify_forged(h, R"({"sub":"alice@example.com","dev":"\u2066pad","exp":1800003600})"),
              jwt::verify_error::bad_identity);
    // jwt::sign writes what it is given; verify refuses it.
    auto t = jwt::sign({"eve\u202Eecila", "tablet", strict_now + 60}, strict_secret, strict_now);
    EXPECT_EQ(jwt::verify(t, {strict_secret}, strict_now).error, jwt::verify_error::bad_identity);
    // Non-ASCII ids are ids.
    EXPECT_EQ(verify_forged(h, R"({"sub":"王伟","dev":"😀pad","exp":1800003600})"),
              jwt::verify_error::none);
}

// Every refusal has its own message (docs/protocol.md's login table).
TEST(JwtStrict, EveryErrorHasADistinctMessage) {
    std::set<std::string> seen;
    for (auto e : {jwt::verify_error::malformed, jwt::verify_error::duplicate_member,
                   jwt::verify_error::bad_algorithm, jwt::verify_error::unsupported_crit,
                   jwt::verify_error::bad_signature, jwt::verify_error::expired,
                   jwt::verify_error::not_yet_valid, jwt::verify_error::missing_claim,
                   jwt::verify_error::bad_time_claim, jwt::verify_error::bad_identity})
        EXPECT_TRUE(seen.insert(jwt::to_string(e)).second) << jwt::to_string(e);
}

// Header checks come before the signature; claim checks after it: a token with a wrong
// signature is bad_signature whatever its claims say.
TEST(JwtStrict, SignatureIsCheckedBeforeTheClaims) {
    auto t =
        forge(R"({"alg":"HS256"})", R"({"sub":"a\u202e","exp":"x","nbf":"y"})", "another-secret");
    EXPECT_EQ(jwt::verify(t, {strict_secret}, strict_now).error, jwt::verify_error::bad_signature);
}
