#include "support/packet_capture.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace canopy::testing {

bool LooksLikePlainHttp(const std::string& p) {
  for (const char* m :
       {"GET ", "POST ", "PUT ", "DELETE ", "PATCH ", "HEAD ", "OPTIONS ", "HTTP/1."}) {
    if (p.rfind(m, 0) == 0) return true;
  }
  return false;
}

bool LooksLikeTls(const std::string& p) {
  if (p.size() < 5) return false;
  unsigned char type = static_cast<unsigned char>(p[0]);
  return (type >= 0x14 && type <= 0x17) && p[1] == 0x03 && static_cast<unsigned char>(p[2]) <= 0x04;
}

PacketCapture::PacketCapture(const std::string& ifname, std::set<uint16_t> ports)
    : ports_(std::move(ports)) {
  // Cooked packets (no link header): the IP packet itself, on loopback and bridges alike.
  // ETH_P_ALL: a protocol-specific packet socket sees only what arrives, not what is sent.
  fd_ = ::socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ALL));
  if (fd_ < 0) {
    ADD_FAILURE() << "cannot open a packet socket: " << std::strerror(errno);
    return;
  }
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = ifname.empty() ? 0 : static_cast<int>(::if_nametoindex(ifname.c_str()));
  if ((!ifname.empty() && sll.sll_ifindex == 0) ||
      ::bind(fd_, reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0) {
    ADD_FAILURE() << "cannot capture on " << ifname << ": " << std::strerror(errno);
    ::close(fd_);
    fd_ = -1;
    return;
  }
  int buf = 8 << 20;
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  thread_ = std::thread([this] { Loop(); });
}

PacketCapture::~PacketCapture() { Stop(); }

void PacketCapture::Loop() {
  std::vector<unsigned char> buf(1 << 16);
  while (!stop_) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    sockaddr_ll from{};
    socklen_t from_len = sizeof from;
    ssize_t n =
        ::recvfrom(fd_, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &from_len);
    if (n < static_cast<ssize_t>(sizeof(iphdr)) || from.sll_protocol != htons(ETH_P_IP)) continue;
    const auto* ip = reinterpret_cast<const iphdr*>(buf.data());
    if (ip->version != 4 || ip->protocol != IPPROTO_TCP) continue;
    size_t ihl = ip->ihl * 4u;
    size_t total = std::min<size_t>(ntohs(ip->tot_len), static_cast<size_t>(n));
    if (total < ihl + sizeof(tcphdr)) continue;
    const auto* tcp = reinterpret_cast<const tcphdr*>(buf.data() + ihl);
    size_t doff = tcp->doff * 4u;
    if (total <= ihl + doff) continue;  // no payload
    TcpSegment s;
    s.sport = ntohs(tcp->source);
    s.dport = ntohs(tcp->dest);
    if (!ports_.empty() && !ports_.count(s.sport) && !ports_.count(s.dport)) continue;
    char a[INET_ADDRSTRLEN];
    ::inet_ntop(AF_INET, &ip->saddr, a, sizeof a);
    s.src = a;
    ::inet_ntop(AF_INET, &ip->daddr, a, sizeof a);
    s.dst = a;
    s.payload.assign(reinterpret_cast<const char*>(buf.data() + ihl + doff), total - ihl - doff);
    std::lock_guard<std::mutex> l(mu_);
    segments_.push_back(std::move(s));
  }
}

std::vector<TcpSegment> PacketCapture::Stop() {
  if (!stop_.exchange(true) && thread_.joinable()) thread_.join();
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  std::lock_guard<std::mutex> l(mu_);
  return segments_;
}

}  // namespace canopy::testing
