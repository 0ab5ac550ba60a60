// Fuzz target: the incremental frame decoder (client and RPC framing) fed in fuzzer-chosen chunk
// sizes, and every client body decoder on the frames it yields.
//
// Input layout: [config][n][n chunk-size bytes][stream...]
//   config bits 0-1: max_body (64 KiB default, 0, 16, 300); bit 2: RPC version byte instead of the
//   client one. Chunk sizes cycle; a size byte of 0 feeds everything left at once.
// Invariants: the chunked decoder yields exactly the frames (and error) of a decoder fed the
// whole stream at once; re-encoding the frames reproduces the consumed prefix byte for byte; no
// body exceeds max_body; a failed decoder stays failed; a body that decodes re-encodes
// identically (the body codecs are canonical).
#include <vector>

#include "common/frame.hpp"
#include "fuzz_support.hpp"
#include "messages.hpp"

using namespace imgate;

namespace {

std::vector<frame> drain(frame_decoder& d, std::vector<frame>& out) {
    while (auto f = d.next()) out.push_back(std::move(*f));
    return out;
}

void check_body(const frame& f) {
    fuzz::with_op(f.op, [&](auto tag) {
        using M = decltype(tag);
        auto m = proto::decode<M>(f);
        if (!m) return;
        std::string re;
        byte_writer w(re);
        proto::write_body(w, *m);
        FUZZ_CHECK(re == f.body);
    });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::byte_source in(data, size);
    uint8_t config = in.u8();
    static constexpr uint32_t bodies[] = {default_max_frame_body, 0, 16, 300};
    uint32_t max_body = bodies[config & 3];
    uint8_t version = (config & 4) ? rpc_protocol_version : client_protocol_version;
    size_t n = in.u8() % 8 + 1;
    std::string sizes = in.bytes(n);
    if (sizes.empty()) sizes.assign(1, 1);
    std::string_view stream = in.rest();

    frame_decoder chunked(max_body, version);
    std::vector<frame> got;
    size_t off = 0, k = 0;
    while (off < stream.size()) {
        size_t c = static_cast<uint8_t>(sizes[k++ % sizes.size()]);
        if (c == 0) c = stream.size() - off;
        c = std::min(c, stream.size() - off);
        chunked.feed(stream.substr(off, c));
        off += c;
        drain(chunked, got);
        if (chunked.error() != frame_error::none) {
            // Failed decoders stay failed and stop buffering.
            size_t before = chunked.buffered();
            chunked.feed(stream.substr(0, std::min<size_t>(stream.size(), 64)));
            FUZZ_CHECK(!chunked.next());
            FUZZ_CHECK(chunked.buffered() == before);
            break;
        }
    }

    frame_decoder whole(max_body, version);
    whole.feed(stream);
    std::vector<frame> ref;
    drain(whole, ref);

    FUZZ_CHECK(got.size() == ref.size());
    FUZZ_CHECK(chunked.error() == whole.error());
    std::string reencoded;
    for (size_t i = 0; i < got.size(); ++i) {
        FUZZ_CHECK(got[i].op == ref[i].op && got[i].flags == ref[i].flags &&
                   got[i].corr == ref[i].corr && got[i].body == ref[i].body);
        FUZZ_CHECK(got[i].body.size() <= max_body);
        append_frame(reencoded, version, got[i].op, got[i].corr, got[i].body, got[i].flags);
        if (version == client_protocol_version) check_body(got[i]);
    }
    FUZZ_CHECK(stream.substr(0, reencoded.size()) == reencoded);
    if (whole.error() == frame_error::none) {
        FUZZ_CHECK(whole.buffered() == stream.size() - reencoded.size());
        FUZZ_CHECK(chunked.buffered() == whole.buffered());
        FUZZ_CHECK(whole.buffered() < frame_header_size + max_body);
    }
    return 0;
}
