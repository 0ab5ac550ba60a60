#include <gtest/gtest.h>

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
