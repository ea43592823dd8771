// Helpers for the POSIX shell and for processes: quoting a word for /bin/sh, blocking the stop
// signals of a daemon.
#pragma once

#include <signal.h>

#include <string>
#include <string_view>

namespace canopy {

// 'text' for /bin/sh: single quotes, an embedded ' as '\''. Safe for any bytes but NUL.
std::string ShellQuote(std::string_view text);

// Blocks SIGINT and SIGTERM in the calling thread (do it before any thread starts, so every
// thread inherits the mask and only a sigwait sees them) and ignores SIGPIPE. Returns the set
// to sigwait on.
sigset_t BlockStopSignals();

}  // namespace canopy
