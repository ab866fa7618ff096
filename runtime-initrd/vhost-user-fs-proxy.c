/*
 * fnrun-vhost-user-fs-proxy: stands between QEMU and virtiofsd so that a VM
 * with a shared-folder device can be saved and restored (docs/snapshots.md).
 *
 *   fnrun-vhost-user-fs-proxy LISTEN_SOCKET DAEMON_SOCKET
 *
 * QEMU 10 saves a vhost-user-fs device only if its back end can hand over its
 * own state (the protocol's DEVICE_STATE feature); QEMU 7.2's virtiofsd
 * cannot. The state it would hand over is that of the FUSE session: the file
 * handles and inodes the guest has open. fnrun saves a VM before it has
 * mounted anything, and each clone mounts after its restore on a new daemon,
 * so that state is empty, and this proxy says so: it claims the feature,
 * answers the transfer with no bytes, and passes every other message (with its
 * descriptors) through unchanged. It serves one connection and exits.
 *
 * Host-side helper, compiled by fnrun on first use (src/vm/mounts.ts).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

enum {
  GET_PROTOCOL_FEATURES = 15,
  SET_PROTOCOL_FEATURES = 16,
  SET_DEVICE_STATE_FD = 42,
  CHECK_DEVICE_STATE = 43,
};
#define F_DEVICE_STATE (1ULL << 19)
#define FLAG_VERSION 0x1u
#define FLAG_REPLY 0x4u
/* SET_DEVICE_STATE_FD's reply: no descriptor of the back end's own (use the front end's pipe). */
#define INVALID_FD 0x100ULL
#define MAX_FDS 8
#define MAX_PAYLOAD 65536

struct header {
  uint32_t request, flags, size;
};

struct message {
  struct header header;
  uint8_t payload[MAX_PAYLOAD];
  int fds[MAX_FDS];
  int nfds;
};

static void fail(const char *what) {
  fprintf(stderr, "fnrun-vhost-user-fs-proxy: %s: %s\n", what, strerror(errno));
  exit(1);
}

static int read_full(int fd, void *buffer, size_t size) {
  for (size_t done = 0; done < size;) {
    ssize_t n = read(fd, (char *)buffer + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    done += (size_t)n;
  }
  return 0;
}

/* One message and the descriptors that came with its header; -1 at the end of the connection. */
static int receive(int fd, struct message *message) {
  char control[CMSG_SPACE(MAX_FDS * sizeof(int))];
  struct iovec iov = {.iov_base = &message->header, .iov_len = sizeof message->header};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
  ssize_t n;
  do n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n <= 0) return -1;
  message->nfds = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    memcpy(message->fds + message->nfds, CMSG_DATA(c), (size_t)count * sizeof(int));
    message->nfds += count;
  }
  if ((size_t)n < sizeof message->header &&
      read_full(fd, (char *)&message->header + n, sizeof message->header - (size_t)n) < 0)
    return -1;
  if (message->header.size > MAX_PAYLOAD) {
    errno = EMSGSIZE;
    fail("message too large");
  }
  return read_full(fd, message->payload, message->header.size);
}

static void send_message(int fd, const struct message *message) {
  char control[CMSG_SPACE(MAX_FDS * sizeof(int))];
  struct iovec iov[2] = {
      {.iov_base = (void *)&message->header, .iov_len = sizeof message->header},
      {.iov_base = (void *)message->payload, .iov_len = message->header.size},
  };
  struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
  if (message->nfds > 0) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE((size_t)message->nfds * sizeof(int));
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN((size_t)message->nfds * sizeof(int));
    memcpy(CMSG_DATA(c), message->fds, (size_t)message->nfds * sizeof(int));
  }
  ssize_t n;
  do n = sendmsg(fd, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  size_t total = sizeof message->header + message->header.size;
  if (n < 0) fail("sending");
  /* Stream sockets may take part of it: the rest goes without the descriptors. */
  for (size_t done = (size_t)n; done < total;) {
    const char *from = done < sizeof message->header
                           ? (const char *)&message->header + done
                           : (const char *)message->payload + (done - sizeof message->header);
    size_t left = done < sizeof message->header ? sizeof message->header - done : total - done;
    ssize_t m = write(fd, from, left);
    if (m < 0 && errno == EINTR) continue;
    if (m < 0) fail("sending");
    done += (size_t)m;
  }
  for (int i = 0; i < message->nfds; i++) close(message->fds[i]);
}

static void reply_u64(int fd, uint32_t request, uint64_t value) {
  static struct message reply;
  reply.header = (struct header){.request = request, .flags = FLAG_VERSION | FLAG_REPLY, .size = sizeof value};
  memcpy(reply.payload, &value, sizeof value);
  reply.nfds = 0;
  send_message(fd, &reply);
}

static uint64_t payload_u64(const struct message *message) {
  uint64_t value = 0;
  if (message->header.size >= sizeof value) memcpy(&value, message->payload, sizeof value);
  return value;
}

static void set_payload_u64(struct message *message, uint64_t value) {
  if (message->header.size >= sizeof value) memcpy(message->payload, &value, sizeof value);
}

/* From QEMU: the transfer is answered here; the feature never reaches the daemon. */
static void from_front_end(struct message *message, int qemu, int daemon) {
  switch (message->header.request) {
    case SET_DEVICE_STATE_FD:
      for (int i = 0; i < message->nfds; i++) close(message->fds[i]); /* no bytes, either way */
      reply_u64(qemu, SET_DEVICE_STATE_FD, INVALID_FD);
      return;
    case CHECK_DEVICE_STATE:
      reply_u64(qemu, CHECK_DEVICE_STATE, 0);
      return;
    case SET_PROTOCOL_FEATURES:
      set_payload_u64(message, payload_u64(message) & ~F_DEVICE_STATE);
      break;
  }
  send_message(daemon, message);
}

/* From the daemon: its features, with the one this proxy provides. */
static void from_back_end(struct message *message, int qemu) {
  if (message->header.request == GET_PROTOCOL_FEATURES && (message->header.flags & FLAG_REPLY))
    set_payload_u64(message, payload_u64(message) | F_DEVICE_STATE);
  send_message(qemu, message);
}

static struct sockaddr_un address_of(const char *path) {
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof address.sun_path) {
    errno = ENAMETOOLONG;
    fail(path);
  }
  strcpy(address.sun_path, path);
  return address;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: fnrun-vhost-user-fs-proxy LISTEN_SOCKET DAEMON_SOCKET\n");
    return 2;
  }
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() == 1) return 1; /* fnrun is already gone */

  int daemon = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un daemon_address = address_of(argv[2]);
  if (daemon < 0) fail("socket");
  /* Started beside its daemon: wait for its socket to be there, and listening (10 s at most). */
  for (int attempt = 0; connect(daemon, (struct sockaddr *)&daemon_address, sizeof daemon_address) < 0; attempt++) {
    if ((errno != ENOENT && errno != ECONNREFUSED) || attempt == 5000) fail("connecting to virtiofsd");
    usleep(2000);
  }

  int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  /* Bound under a temporary name and renamed: the socket appears only once it listens. */
  char pending[sizeof ((struct sockaddr_un *)0)->sun_path + 8];
  snprintf(pending, sizeof pending, "%s.tmp", argv[1]);
  struct sockaddr_un pending_address = address_of(pending);
  unlink(pending);
  if (listener < 0 || bind(listener, (struct sockaddr *)&pending_address, sizeof pending_address) < 0 ||
      listen(listener, 1) < 0 || rename(pending, argv[1]) < 0)
    fail("listening");
  int qemu;
  do qemu = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
  while (qemu < 0 && errno == EINTR);
  if (qemu < 0) fail("accepting");
  close(listener);
  unlink(argv[1]);

  static struct message message;
  struct pollfd fds[2] = {{.fd = qemu, .events = POLLIN}, {.fd = daemon, .events = POLLIN}};
  for (;;) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      fail("poll");
    }
    if (fds[0].revents) {
      if (receive(qemu, &message) < 0) return 0;
      from_front_end(&message, qemu, daemon);
    }
    if (fds[1].revents) {
      if (receive(daemon, &message) < 0) return 0;
      from_back_end(&message, qemu);
    }
  }
}
