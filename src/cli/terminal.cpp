#include "cli/terminal.h"

#include <openssl/crypto.h>
#include <signal.h>
#include <termios.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <string>

namespace canopy::cli {

namespace {

// Saved for the signal handler, which restores echo before the default action ends the process.
termios g_saved_termios;
volatile sig_atomic_t g_echo_off = 0;

void RestoreAndReraise(int sig) {
  if (g_echo_off != 0) {
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &g_saved_termios);
    g_echo_off = 0;
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

void WriteStderr(std::string_view s) {
  while (!s.empty()) {
    ssize_t n = write(STDERR_FILENO, s.data(), s.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return;
    }
    s.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace

Result<SecretString> PromptPasswordOnTerminal(std::string_view prompt) {
  if (isatty(STDIN_FILENO) == 0 || tcgetattr(STDIN_FILENO, &g_saved_termios) != 0) {
    return Error::FailedPrecondition("standard input is not a terminal");
  }
  struct sigaction sa {};
  sa.sa_handler = RestoreAndReraise;
  sigemptyset(&sa.sa_mask);
  struct sigaction old_int {
  }, old_term{}, old_hup{};
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  sigaction(SIGHUP, &sa, &old_hup);

  WriteStderr(prompt);
  termios quiet = g_saved_termios;
  quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
  quiet.c_lflag |= ECHONL;
  g_echo_off = 1;
  tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);

  std::string line;
  line.reserve(1024);  // no reallocation, so no stray copies of the password
  bool ok = true;
  for (;;) {
    char c = 0;
    ssize_t n = read(STDIN_FILENO, &c, 1);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      ok = false;
      break;
    }
    if (n == 0 || c == '\n') {
      break;
    }
    if (c != '\r') {
      line += c;
    }
  }

  tcsetattr(STDIN_FILENO, TCSAFLUSH, &g_saved_termios);
  g_echo_off = 0;
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  sigaction(SIGHUP, &old_hup, nullptr);
  if (!ok) {
    OPENSSL_cleanse(line.data(), line.size());
    return Error::FailedPrecondition("cannot read the password from the terminal");
  }
  SecretString secret(line);
  OPENSSL_cleanse(line.data(), line.size());
  return secret;
}

Result<bool> ConfirmOnTerminal(std::string_view prompt) {
  if (isatty(STDIN_FILENO) == 0) {
    return Error::FailedPrecondition("standard input is not a terminal");
  }
  WriteStderr(prompt);
  std::string line;
  for (;;) {
    char c = 0;
    ssize_t n = read(STDIN_FILENO, &c, 1);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0 || c == '\n') {
      break;
    }
    if (line.size() < 16) {
      line += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
  }
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) {
    line.pop_back();
  }
  while (!line.empty() && line.front() == ' ') {
    line.erase(line.begin());
  }
  return line == "y" || line == "yes";
}

}  // namespace canopy::cli
