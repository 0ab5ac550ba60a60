#pragma once
// Forwarding header only: the pieces that lived here have their own headers now
// (common/token_bucket.hpp, gateway/pending_acks.hpp, gateway/message_ids.hpp). Kept so that
// code still including it builds; include the header you need instead. To be deleted once
// session.hpp includes common/token_bucket.hpp.
#include "common/token_bucket.hpp"
