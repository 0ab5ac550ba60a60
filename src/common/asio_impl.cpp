// Asio (with its SSL layer) and Beast are compiled once here (BOOST_*_SEPARATE_COMPILATION) to
// keep builds fast.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
