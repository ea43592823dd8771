// Password prompt on the controlling terminal with echo turned off, and a yes/no question. Used by
// src/exe/canopy.cpp as the cli::PasswordPrompt and cli::ConfirmPrompt. Not thread-safe (changes
// terminal modes and signal handlers).
#pragma once

#include <string_view>

#include "common/result.h"
#include "common/secret.h"

namespace canopy::cli {

// Writes `prompt` to stderr and reads one line from stdin with echo off. kFailedPrecondition when
// stdin is not a terminal. Echo is restored even if the user interrupts with Ctrl-C.
Result<SecretString> PromptPasswordOnTerminal(std::string_view prompt);

// Writes `prompt` to stderr and reads one line from stdin: true for "y" or "yes" (any case), false
// for anything else (end of input too). kFailedPrecondition, writing nothing, when stdin is not a
// terminal.
Result<bool> ConfirmOnTerminal(std::string_view prompt);

}  // namespace canopy::cli
