// Fuzz target: every client message body decoder on arbitrary bytes.
//
// Input layout: [type selector][body...]. The selector picks one of the 16 message types.
// Invariants: a body that decodes re-encodes to exactly the same bytes (decoders reject trailing
// bytes, missing fields and out-of-range enums, so the codec is canonical); the decoded message
// survives a whole-frame encode/decode with the same fields.
#include "common/frame.hpp"
#include "fuzz_support.hpp"
#include "messages.hpp"

using namespace imgate;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::byte_source in(data, size);
    uint8_t op = fuzz::nth_op(in.u8());
    std::string body(in.rest());
    fuzz::with_op(op, [&](auto tag) {
        using M = decltype(tag);
        M m;
        if (!proto::read_body(body, m)) return;
        std::string re;
        byte_writer w(re);
        proto::write_body(w, m);
        FUZZ_CHECK(re == body);

        std::string wire = proto::encode(m, 0x01020304u);
        frame_decoder d(absolute_max_frame_body);
        d.feed(wire);
        auto f = d.next();
        FUZZ_CHECK(f.has_value());
        FUZZ_CHECK(f->corr == 0x01020304u && f->op == static_cast<uint8_t>(M::opcode));
        auto back = proto::decode<M>(*f);
        FUZZ_CHECK(back.has_value());
        FUZZ_CHECK(fuzz::dump(*back) == fuzz::dump(m));
    });
    return 0;
}
