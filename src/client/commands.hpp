#pragma once
// The subcommands of the `imgate` tool, each a function from parsed options to an exit code.
// main.cpp only declares the CLI; everything here is callable from tests.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "client/logic.hpp"
#include "client/tls_client.hpp"

namespace imgate::client {

// Where to connect and as whom; shared by listen, send and chat.
struct session_args {
    std::string user;
    std::string device;
    std::string token;        // given: used as is
    std::string secret_file;  // else: mint a token with this secret
    std::string ttl = "1h";
    std::string gateway;  // host:port; empty: through the dispatchers
    // --dispatcher URL, repeatable, each a URL or a comma-separated list (fail-over order).
    std::vector<std::string> dispatcher{"http://127.0.0.1:8080"};
    std::string region;
    std::string connect_timeout = "10s";  // also bounds the TLS / WebSocket handshake
    transport_args transport;
    bool json = false;
};

struct listen_args {
    session_args s;
    std::vector<std::string> rooms;
    uint64_t count = 0;   // 0: unlimited
    std::string timeout;  // empty: unlimited
};

struct send_args {
    session_args s;
    std::string to;
    std::string room;
    std::string text;
    std::string wait_receipt;  // empty: don't wait
    std::string timeout = "15s";
};

struct push_args {
    std::string admin;  // host:port
    std::string admin_token_file;
    std::string user;
    std::string room;
    std::string text;
    std::string timeout = "5s";
};

struct get_gateway_args {
    std::vector<std::string> dispatcher{"http://127.0.0.1:8080"};  // as session_args
    std::string user;
    std::string region;
    std::string exclude;
    transport_args transport;
};

struct token_args {
    std::string secret_file;
    std::string user;
    std::string device;
    std::string ttl = "1h";
};

// The secret file to use: explicit, else $IMGATE_TOKEN_SECRET_FILE, else
// ./config/local/token.secret when it exists; "" when none.
std::string default_secret_file(const std::string& given);
std::string default_admin_token_file(const std::string& given);

// The `sub` claim of a JWT (not verified: only used to ask the dispatcher for a pick).
std::optional<std::string> token_subject(const std::string& token);

// Resolves the token of a session: --token, or minted from the secret file. On failure returns
// nullopt with err set to a line for the user.
std::optional<std::string> session_token(session_args& a, std::string* err);

// The transport and TLS trust a command uses. The TLS context is made when something needs it
// (tls/wss, or https_dispatcher); --insecure prints its warning here. nullopt with err set on a
// flag conflict or an unreadable CA file.
struct transport_setup {
    transport via = transport::tcp;
    std::shared_ptr<const tls_client> tls;
};
std::optional<transport_setup> prepare_transport(const transport_args& a, bool https_dispatcher,
                                                 std::string* err);

int run_token(const token_args& a);
int run_get_gateway(const get_gateway_args& a);
int run_listen(listen_args a);
int run_send(send_args a);
int run_push(const push_args& a);
int run_chat(listen_args a, std::string to, std::string room);

}  // namespace imgate::client
