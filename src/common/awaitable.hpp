#pragma once
// The completion token of every coroutine in the project. Asio here has no default token, and on
// I/O paths errors come back as values (`auto [ec, n] = co_await op(..., use_tuple)`), never as
// exceptions: one definition instead of one per file.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace imgate {

inline constexpr auto use_tuple = boost::asio::as_tuple(boost::asio::use_awaitable);

}  // namespace imgate
