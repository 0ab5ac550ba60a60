#pragma once
// The one body codec of both wire protocols (client 0x01 and RPC 0x81, docs/protocol.md).
//
// A message spells its fields once, in wire order:
//
//     static auto fields(auto& m) { return codec::list(m.a, m.b, codec::blob32(m.payload)); }
//
// and that list drives write_body, read_body and the whole-frame encode/decode alike, so the two
// directions cannot drift apart. The C++ type of a field says how it travels:
//   uint8_t/16/32/64   big-endian u8/u16/u32/u64
//   bool               u8 0 or 1; anything else is refused
//   enum               its underlying width; refused unless wire_valid(e) (found by ADL, declared
//                      next to the enum) holds
//   std::string        str16 (u16 length + bytes); codec::blob32(s) for u32 length + bytes
//   std::vector<T>     u32 count + that many T
//   a struct with its own fields()   its fields, inline
// A message whose decoding needs more than its fields (a size, a cross-field rule, dropping
// entries) adds `bool validate()`, run once after every field was read (a nested field list's
// own validate() is not run: the message that holds it checks what it needs). The frame version
// comes from frame_version(M::opcode), also found by ADL: one per protocol, next to its op enum.
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/bytes.hpp"
#include "common/frame.hpp"

namespace imgate::codec {

// Marks a string that travels with a u32 length (payloads) instead of the default u16.
template <class S>
struct blob32_field {
    S& value;
};
template <class S>
blob32_field<S> blob32(S& s) {
    return {s};
}

// A field list: references to the members (lvalues) and wire-type wrappers (by value; they hold
// the reference themselves).
template <class... T>
auto list(T&&... t) {
    return std::tuple<T...>(std::forward<T>(t)...);
}

template <class T>
concept has_fields = requires(T& m) {
    T::fields(m);
};

template <class M>
concept framed = has_fields<M> && requires {
    M::opcode;
    frame_version(M::opcode);
};

// What a body decoded to: bad_value is a well-formed body with an enum or bool out of range,
// which the lenient SEND decoding still answers; malformed is a missing field or trailing bytes.
enum class read_result : uint8_t { ok, bad_value, malformed };

namespace detail {

template <class T>
struct is_blob32 : std::false_type {};
template <class S>
struct is_blob32<blob32_field<S>> : std::true_type {};

template <class T>
struct is_vector : std::false_type {};
template <class T, class A>
struct is_vector<std::vector<T, A>> : std::true_type {};

template <class T>
inline constexpr bool is_uint = std::is_same_v<T, uint8_t> || std::is_same_v<T, uint16_t> ||
                                std::is_same_v<T, uint32_t> || std::is_same_v<T, uint64_t>;

template <class T>
constexpr size_t min_wire_size();

template <class List, size_t... I>
constexpr size_t min_list_size(std::index_sequence<I...>) {
    return (size_t{0} + ... + min_wire_size<std::remove_cvref_t<std::tuple_element_t<I, List>>>());
}

// The fewest bytes a T takes on the wire; bounds a declared count before anything is reserved.
template <class T>
constexpr size_t min_wire_size() {
    if constexpr (std::is_same_v<T, bool>) {
        return 1;
    } else if constexpr (std::is_enum_v<T>) {
        return sizeof(std::underlying_type_t<T>);
    } else if constexpr (is_uint<T>) {
        return sizeof(T);
    } else if constexpr (std::is_same_v<T, std::string>) {
        return 2;
    } else if constexpr (is_blob32<T>::value || is_vector<T>::value) {
        return 4;
    } else {
        static_assert(has_fields<T>, "no wire type for this field");
        using L = decltype(T::fields(std::declval<T&>()));
        return min_list_size<L>(std::make_index_sequence<std::tuple_size_v<L>>{});
    }
}

template <class T>
void write_field(byte_writer& w, const T& v) {
    if constexpr (std::is_same_v<T, bool>) {
        w.u8(v ? 1 : 0);
    } else if constexpr (std::is_enum_v<T>) {
        write_field(w, static_cast<std::underlying_type_t<T>>(v));
    } else if constexpr (std::is_same_v<T, uint8_t>) {
        w.u8(v);
    } else if constexpr (std::is_same_v<T, uint16_t>) {
        w.u16(v);
    } else if constexpr (std::is_same_v<T, uint32_t>) {
        w.u32(v);
    } else if constexpr (std::is_same_v<T, uint64_t>) {
        w.u64(v);
    } else if constexpr (std::is_same_v<T, std::string>) {
        w.str16(v);
    } else if constexpr (is_blob32<T>::value) {
        w.blob32(v.value);
    } else if constexpr (is_vector<T>::value) {
        w.u32(static_cast<uint32_t>(v.size()));
        for (const auto& e : v) write_field(w, e);
    } else {
        static_assert(has_fields<T>, "no wire type for this field");
        std::apply([&](const auto&... f) { (write_field(w, f), ...); }, T::fields(v));
    }
}

// Reads fields in order; a short body latches the byte_reader, so every later field reads as
// zero and the result is malformed, as the hand-written decoders behaved.
class field_reader {
  public:
    explicit field_reader(std::string_view body) : r_(body), body_size_(body.size()) {}

    template <class T>
    void read(T& v) {
        if constexpr (std::is_same_v<T, bool>) {
            uint8_t b = r_.u8();
            if (b > 1) bad_value_ = true;
            v = b == 1;
        } else if constexpr (std::is_enum_v<T>) {
            std::underlying_type_t<T> raw{};
            read(raw);
            v = static_cast<T>(raw);
            if (!wire_valid(v)) bad_value_ = true;
        } else if constexpr (std::is_same_v<T, uint8_t>) {
            v = r_.u8();
        } else if constexpr (std::is_same_v<T, uint16_t>) {
            v = r_.u16();
        } else if constexpr (std::is_same_v<T, uint32_t>) {
            v = r_.u32();
        } else if constexpr (std::is_same_v<T, uint64_t>) {
            v = r_.u64();
        } else if constexpr (std::is_same_v<T, std::string>) {
            v = r_.str16();
        } else if constexpr (is_blob32<T>::value) {
            v.value = r_.blob32();
        } else if constexpr (is_vector<T>::value) {
            read_vector(v);
        } else {
            static_assert(has_fields<T>, "no wire type for this field");
            auto fields = T::fields(v);  // an lvalue: the wrappers in it are read into
            std::apply([&](auto&... f) { (read(f), ...); }, fields);
        }
    }

    read_result result() const {
        if (malformed_ || !r_.done()) return read_result::malformed;
        return bad_value_ ? read_result::bad_value : read_result::ok;
    }

  private:
    template <class V>
    void read_vector(V& v) {
        using E = typename V::value_type;
        constexpr size_t min = min_wire_size<E>();
        static_assert(min > 0);
        uint32_t n = r_.u32();
        v.clear();
        // A count the body cannot hold is refused before it can size an allocation.
        if (n > body_size_ / min) {
            malformed_ = true;
            return;
        }
        v.reserve(n);
        for (uint32_t i = 0; i < n && r_.ok(); ++i) {
            E e{};
            read(e);
            v.push_back(std::move(e));
        }
    }

    byte_reader r_;
    size_t body_size_;
    bool bad_value_ = false;
    bool malformed_ = false;
};

template <class M>
bool validated(M& m) {
    if constexpr (requires { m.validate(); })
        return m.validate();
    else
        return true;
}

}  // namespace detail

template <has_fields M>
void write_body(byte_writer& w, const M& m) {
    detail::write_field(w, m);
}

// The fields alone, without validate(): for a decoder that answers some refused bodies anyway.
template <has_fields M>
read_result read_fields(std::string_view body, M& m) {
    detail::field_reader r(body);
    r.read(m);
    return r.result();
}

// False on a missing field, trailing bytes, a value out of range or a failed validate().
template <has_fields M>
bool read_body(std::string_view body, M& m) {
    return read_fields(body, m) == read_result::ok && detail::validated(m);
}

// Appends a whole frame for m to out, with the version of m's protocol.
template <framed M>
void encode(std::string& out, const M& m, uint32_t corr = 0) {
    size_t start = begin_frame(out);
    byte_writer w(out);
    write_body(w, m);
    finish_frame(out, start, frame_version(M::opcode), static_cast<uint8_t>(M::opcode), corr);
}

template <framed M>
std::string encode(const M& m, uint32_t corr = 0) {
    std::string out;
    // One allocation for the usual small frame (a SEND_RESULT, a PONG, a RECEIPT) instead of
    // growing past the inline buffer twice.
    out.reserve(64);
    encode(out, m, corr);
    return out;
}

// f's body as M; nullopt when the op differs or the body is refused.
template <framed M>
std::optional<M> decode(const frame& f) {
    if (f.op != static_cast<uint8_t>(M::opcode)) return std::nullopt;
    M m;
    if (!read_body(f.body, m)) return std::nullopt;
    return m;
}

}  // namespace imgate::codec
