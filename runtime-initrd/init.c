/*
 * fnrun stage-0 init.
 *
 * The kernel runs this as PID 1. It does the few things Node.js cannot do for
 * itself, then execs Node, which from then on *is* PID 1 (there is no init
 * system and nothing else runs in the guest):
 *
 *   1. mounts /dev (devtmpfs), /proc and /tmp, and the read-only runtime disk
 *      when the runtime lives on one (fnrun_runtime=disk on the kernel command
 *      line), and brings up the loopback interface;
 *   2. when the VM is booted to be snapshotted (fnrun_snapshot=1), sets the wall
 *      clock far into the future before Node starts, so that OpenSSL records its
 *      seeding time in the future; after a restore the agent sets the true time,
 *      the clock moves backwards and OpenSSL reseeds on its next use;
 *   3. forks a tiny agent that stays behind to do privileged work Node has no
 *      API for: reseeding the kernel's random generator, setting the clock
 *      (a clone's at its wake-up, a booted VM's from the host's),
 *      binding devices plugged into a clone after its restore, configuring its
 *      network, mounting shared folders. Node talks to it over two pipes (fd 3
 *      and 4).
 *
 * Kernel command-line words "key=value" without a dot reach us as environment
 * variables.
 * Statically linked, so it needs nothing from the runtime disk.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define AGENT_REQUEST_FD 3
#define AGENT_REPLY_FD 4
#define FUTURE_EPOCH_SECONDS 4102444800LL /* 2100-01-01 */
#define MAX_ENTROPY_BYTES 512
#define MAX_NODE_ARGUMENTS 16

static void say(const char *message) {
  /* Unframed text on the console is shown to the user as a boot message. */
  if (write(2, message, strlen(message)) < 0) {
  }
}

static void die(const char *what) {
  char line[256];
  snprintf(line, sizeof line, "fnrun-init: %s: %s\n", what, strerror(errno));
  say(line);
  /* Returning from PID 1 panics the kernel; with panic=-1 and -no-reboot QEMU
   * then exits and the host reports a boot failure with this line in it. */
  _exit(1);
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* RNDADDENTROPY credits the host's fresh bytes, RNDRESEEDCRNG makes the
 * kernel's generator use them now rather than at its next scheduled reseed. */
static int reseed_kernel(const char *hex) {
  struct {
    struct rand_pool_info info;
    unsigned char bytes[MAX_ENTROPY_BYTES];
  } request;
  size_t count = 0;
  while (hex[0] && hex[1] && count < MAX_ENTROPY_BYTES) {
    int high = hex_value(hex[0]), low = hex_value(hex[1]);
    if (high < 0 || low < 0) return -EINVAL;
    request.bytes[count++] = (unsigned char)(high * 16 + low);
    hex += 2;
  }
  if (count < 16) return -EINVAL;
  request.info.entropy_count = (int)(count * 8);
  request.info.buf_size = (int)count;
  int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  int result = 0;
  if (ioctl(fd, RNDADDENTROPY, &request) < 0 || ioctl(fd, RNDRESEEDCRNG) < 0) result = -errno;
  close(fd);
  return result;
}

/* "SECONDS NANOSECONDS READ_AT_NS": the host's clock, as the guest read it at
 * READ_AT_NS of CLOCK_MONOTONIC (Node's hrtime reads the same clock). The time
 * set is that reading plus what has passed in the guest since: decoding the
 * message, the round trip here. */
static int set_clock(const char *arguments) {
  long long seconds = 0, nanoseconds = 0, read_at = 0;
  if (sscanf(arguments, "%lld %lld %lld", &seconds, &nanoseconds, &read_at) != 3) return -EINVAL;
  struct timespec monotonic;
  if (clock_gettime(CLOCK_MONOTONIC, &monotonic) < 0) return -errno;
  long long since = (long long)monotonic.tv_sec * 1000000000LL + monotonic.tv_nsec - read_at;
  if (since < 0 || since > 60LL * 1000000000LL) since = 0; /* not a reading from this clock */
  long long total = seconds * 1000000000LL + nanoseconds + since;
  struct timespec now = {.tv_sec = total / 1000000000LL, .tv_nsec = total % 1000000000LL};
  return clock_settime(CLOCK_REALTIME, &now) < 0 ? -errno : 0;
}

static int mount_shared_folder(const char *arguments) {
  char tag[64], path[256], mode[4];
  if (sscanf(arguments, "%63s %255s %3s", tag, path, mode) != 3) return -EINVAL;
  /* mkdir -p */
  for (char *slash = path + 1; *slash; slash++) {
    if (*slash != '/') continue;
    *slash = 0;
    mkdir(path, 0755);
    *slash = '/';
  }
  mkdir(path, 0755);
  unsigned long flags = MS_NOSUID | MS_NODEV;
  if (strcmp(mode, "ro") == 0) flags |= MS_RDONLY;
  return mount(tag, path, "virtiofs", flags, NULL) < 0 ? -errno : 0;
}

/* After a snapshot restore: binds the virtio-mmio transports that were empty
 * when the VM was saved (registered from the kernel command line, probed and
 * set aside) and now hold a device: the clone's network card.
 * Binding probes the driver at once, so the device is there when this returns.
 * sysfs is mounted only meanwhile. */
static int attach_devices(void) {
  mkdir("/sys", 0755);
  if (mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) return -errno;
  int result = 0;
  DIR *devices = opendir("/sys/bus/platform/devices");
  if (!devices) {
    result = -errno;
  } else {
    struct dirent *entry;
    while (result == 0 && (entry = readdir(devices)) != NULL) {
      if (strncmp(entry->d_name, "virtio-mmio.", 12) != 0) continue;
      char driver[300];
      snprintf(driver, sizeof driver, "/sys/bus/platform/devices/%s/driver", entry->d_name);
      struct stat info;
      if (lstat(driver, &info) == 0) continue; /* bound since the boot */
      int bind = open("/sys/bus/platform/drivers/virtio-mmio/bind", O_WRONLY | O_CLOEXEC);
      if (bind < 0) {
        result = -errno;
        break;
      }
      /* A transport still empty refuses (ENODEV): expected. */
      if (write(bind, entry->d_name, strlen(entry->d_name)) < 0 && errno != ENODEV && errno != ENXIO)
        result = -errno;
      close(bind);
    }
    closedir(devices);
  }
  umount2("/sys", MNT_DETACH);
  return result;
}

static void set_ipv4(struct sockaddr *address, in_addr_t value) {
  struct sockaddr_in *ipv4 = (struct sockaddr_in *)address;
  memset(ipv4, 0, sizeof *ipv4);
  ipv4->sin_family = AF_INET;
  ipv4->sin_addr.s_addr = value;
}

/* "ADDRESS GATEWAY PREFIX": eth0 up with that address and a default route
 * (what the kernel's ip= does at boot, for a clone whose network came after). */
static int configure_network(const char *arguments) {
  char address_text[16], gateway_text[16];
  int prefix = 0;
  struct in_addr address, gateway;
  if (sscanf(arguments, "%15s %15s %d", address_text, gateway_text, &prefix) != 3 || prefix < 1 ||
      prefix > 32 || inet_pton(AF_INET, address_text, &address) != 1 ||
      inet_pton(AF_INET, gateway_text, &gateway) != 1)
    return -EINVAL;
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  struct ifreq request;
  memset(&request, 0, sizeof request);
  strncpy(request.ifr_name, "eth0", IFNAMSIZ - 1);
  int result = 0;
  set_ipv4(&request.ifr_addr, address.s_addr);
  if (ioctl(fd, SIOCSIFADDR, &request) < 0) result = -errno;
  set_ipv4(&request.ifr_netmask, htonl(prefix == 32 ? 0xffffffffu : ~(0xffffffffu >> prefix)));
  if (result == 0 && ioctl(fd, SIOCSIFNETMASK, &request) < 0) result = -errno;
  if (result == 0 && ioctl(fd, SIOCGIFFLAGS, &request) < 0) result = -errno;
  request.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (result == 0 && ioctl(fd, SIOCSIFFLAGS, &request) < 0) result = -errno;
  struct rtentry route;
  memset(&route, 0, sizeof route);
  set_ipv4(&route.rt_dst, INADDR_ANY);
  set_ipv4(&route.rt_genmask, INADDR_ANY);
  set_ipv4(&route.rt_gateway, gateway.s_addr);
  route.rt_flags = RTF_UP | RTF_GATEWAY;
  if (result == 0 && ioctl(fd, SIOCADDRT, &route) < 0 && errno != EEXIST) result = -errno;
  close(fd);
  return result;
}

/* After a snapshot restore: the true time first (moving the clock back makes
 * OpenSSL reseed on its next use, see main), then the host's fresh entropy.
 * "SECONDS NANOSECONDS READ_AT_NS HEX" */
static int reseed(const char *arguments) {
  int result = set_clock(arguments);
  if (result != 0) return result;
  const char *hex = arguments;
  for (int spaces = 0; *hex && spaces < 3; hex++)
    if (*hex == ' ') spaces++;
  return reseed_kernel(hex);
}

/* One request per line: "reseed SECONDS NANOSECONDS READ_AT_NS HEX", "clock
 * SECONDS NANOSECONDS READ_AT_NS" (a booted VM's clock, from the host's), "attach",
 * "network ADDRESS GATEWAY PREFIX", "mount TAG PATH ro|rw", "ping" (the
 * runtime's rehearsal before a snapshot).
 * One reply per request: "ok" or "error ERRNO". */
static void agent_loop(void) {
  char line[2048];
  size_t used = 0;
  for (;;) {
    ssize_t got = read(AGENT_REQUEST_FD, line + used, sizeof line - 1 - used);
    if (got <= 0) _exit(0);
    used += (size_t)got;
    char *newline;
    while ((newline = memchr(line, '\n', used)) != NULL) {
      *newline = 0;
      int result = -EINVAL;
      if (strncmp(line, "reseed ", 7) == 0) result = reseed(line + 7);
      else if (strncmp(line, "clock ", 6) == 0) result = set_clock(line + 6);
      else if (strcmp(line, "attach") == 0) result = attach_devices();
      else if (strncmp(line, "network ", 8) == 0) result = configure_network(line + 8);
      else if (strncmp(line, "mount ", 6) == 0) result = mount_shared_folder(line + 6);
      else if (strcmp(line, "ping") == 0) result = 0;
      char reply[32];
      int length = result == 0 ? snprintf(reply, sizeof reply, "ok\n")
                               : snprintf(reply, sizeof reply, "error %d\n", -result);
      if (write(AGENT_REPLY_FD, reply, (size_t)length) < 0) _exit(1);
      size_t consumed = (size_t)(newline - line) + 1;
      memmove(line, newline + 1, used - consumed);
      used -= consumed;
    }
    if (used == sizeof line - 1) used = 0; /* an overlong request is dropped */
  }
}

/* Moves a descriptor well clear of 0-4, so that placing the pipes at 3 and 4
 * cannot close one end while moving the other. */
static int raise_fd(int fd) {
  int high = fcntl(fd, F_DUPFD, 10);
  if (high < 0) die("fcntl");
  close(fd);
  return high;
}

static void place_fd(int fd, int target) {
  if (dup2(fd, target) < 0) die("dup2");
  close(fd);
}

static void start_agent(void) {
  int requests[2], replies[2];
  if (pipe(requests) < 0 || pipe(replies) < 0) die("pipe");
  for (int i = 0; i < 2; i++) {
    requests[i] = raise_fd(requests[i]);
    replies[i] = raise_fd(replies[i]);
  }
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    prctl(PR_SET_NAME, "fnrun-agent");
    close(requests[1]);
    close(replies[0]);
    place_fd(requests[0], AGENT_REQUEST_FD);
    place_fd(replies[1], AGENT_REPLY_FD);
    agent_loop();
  }
  /* Node writes requests on fd 3 and reads replies on fd 4. */
  close(requests[0]);
  close(replies[1]);
  place_fd(requests[1], AGENT_REQUEST_FD);
  place_fd(replies[0], AGENT_REPLY_FD);
}

/* The loopback interface starts down; functions expect localhost to work. */
static void bring_up_loopback(void) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  struct ifreq request;
  memset(&request, 0, sizeof request);
  strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
  if (ioctl(fd, SIOCGIFFLAGS, &request) == 0) {
    request.ifr_flags |= IFF_UP | IFF_RUNNING;
    ioctl(fd, SIOCSIFFLAGS, &request);
  }
  close(fd);
}

static void mount_or_die(const char *source, const char *target, const char *type, unsigned long flags) {
  mkdir(target, 0755);
  if (mount(source, target, type, flags, NULL) < 0 && errno != EBUSY) die(target);
}

int main(void) {
  struct timespec started;
  clock_gettime(CLOCK_MONOTONIC, &started);

  mount_or_die("devtmpfs", "/dev", "devtmpfs", MS_NOSUID);
  mount_or_die("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC);
  mount_or_die("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV);

  const char *runtime = getenv("fnrun_runtime");
  if (runtime && strcmp(runtime, "disk") == 0)
    mount_or_die("/dev/vda", "/runtime", "erofs", MS_RDONLY | MS_NODEV | MS_NOSUID);

  const char *snapshot = getenv("fnrun_snapshot");
  if (snapshot && strcmp(snapshot, "1") == 0) {
    struct timeval future = {.tv_sec = FUTURE_EPOCH_SECONDS, .tv_usec = 0};
    if (settimeofday(&future, NULL) < 0) die("settimeofday");
  }

  bring_up_loopback();
  start_agent();

  char started_ns[32];
  snprintf(started_ns, sizeof started_ns, "%lld",
           (long long)started.tv_sec * 1000000000LL + started.tv_nsec);
  setenv("FNRUN_INIT_STARTED_NS", started_ns, 1);
  setenv("HOME", "/tmp", 1);
  setenv("TZ", "UTC", 1);
  setenv("PATH", "/runtime/bin:/bin", 1);
  setenv("TMPDIR", "/tmp", 1);

  /* fnrun_node=OPTION,OPTION... on the kernel command line: options for Node. */
  const char *node = "/runtime/bin/node";
  char *arguments[MAX_NODE_ARGUMENTS + 3];
  int count = 0;
  arguments[count++] = (char *)node;
  char *node_options = getenv("fnrun_node");
  if (node_options && *node_options) {
    node_options = strdup(node_options);
    for (char *option = strtok(node_options, ","); option && count <= MAX_NODE_ARGUMENTS;
         option = strtok(NULL, ","))
      arguments[count++] = option;
  }
  arguments[count++] = "/fnrun/guest.mjs";
  arguments[count] = NULL;

  extern char **environ;
  execve(node, arguments, environ);
  die(node);
  return 1;
}
