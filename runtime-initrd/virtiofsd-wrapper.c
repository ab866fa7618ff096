/*
 * fnrun-virtiofsd: starts virtiofsd for one shared folder, so that
 *   - it dies with the fnrun process that started it (parent-death signal), and
 *   - a read-only folder is read-only on the host too: virtiofsd has no read-only
 *     mode, so it runs in a private mount namespace where the folder is a
 *     read-only bind mount, every file system mounted inside it included
 *     (mount_setattr with AT_RECURSIVE). Whatever the guest does (even root in the
 *     guest mounting it read-write), writes fail with EROFS on the host side.
 *     mount_setattr changes only the read-only attribute, so it also works where a
 *     remount would have to repeat flags a user namespace may not drop (a nosuid,
 *     nodev /tmp or /dev/shm: remounting without them fails with EPERM).
 * When not run as root, a user namespace maps the caller to root first (virtiofsd
 * needs root, or the appearance of it, for its own sandbox).
 * It stays virtiofsd's parent, and the subreaper of what virtiofsd forks (its
 * sandbox child, orphaned for a moment when virtiofsd is stopped first), so that
 * every one is reaped here: an orphan would go to PID 1, and a container's PID 1
 * often never reaps, leaving a zombie per invocation. SIGTERM, SIGINT and SIGHUP
 * are passed on to virtiofsd; it exits with virtiofsd's status once no child is
 * left.
 *
 * Usage: fnrun-virtiofsd SOURCE ro|rw VIRTIOFSD [VIRTIOFSD-ARGUMENTS...]
 * Host-side helper, compiled by fnrun on first use (src/mounts.ts).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* From <linux/mount.h>, which does not mix with glibc's <sys/mount.h>. */
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
struct fnrun_mount_attr {
  unsigned long long attr_set, attr_clr, propagation, userns_fd;
};

/* Makes the mount at `path` and every mount below it read-only (Linux 5.12+). */
static int make_read_only_recursively(const char *path) {
  struct fnrun_mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY};
  return (int)syscall(SYS_mount_setattr, AT_FDCWD, path, AT_RECURSIVE, &attr, sizeof attr);
}

static void fail(const char *what) {
  fprintf(stderr, "fnrun-virtiofsd: %s: %s\n", what, strerror(errno));
  exit(125);
}

static void write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) fail(path);
  if (write(fd, text, strlen(text)) < 0) fail(path);
  close(fd);
}

static volatile pid_t daemon_pid;

static void pass_on(int signal_number) {
  if (daemon_pid > 0) kill(daemon_pid, signal_number);
}

/* Runs `command` as a child, passes stop signals on to it, reaps it and every
 * orphan of its own, and returns its exit status. */
static int run_and_reap(char **command) {
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) fail("prctl(PR_SET_CHILD_SUBREAPER)");
  pid_t self = getpid();
  struct sigaction action = {.sa_handler = pass_on};
  sigemptyset(&action.sa_mask);
  int stops[] = {SIGTERM, SIGINT, SIGHUP};
  for (size_t index = 0; index < sizeof stops / sizeof stops[0]; index++)
    if (sigaction(stops[index], &action, NULL) < 0) fail("sigaction");
  pid_t child = fork();
  if (child < 0) fail("fork");
  if (child == 0) {
    /* exec resets the handlers; the parent-death signal is per process. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) fail("prctl");
    if (getppid() != self) _exit(125); /* the wrapper is already gone */
    execv(command[0], command);
    fail(command[0]);
  }
  daemon_pid = child;
  int status = 0, result = 125;
  for (;;) {
    pid_t ended = waitpid(-1, &status, __WALL);
    if (ended < 0) {
      if (errno == EINTR) continue;
      break; /* ECHILD: none left */
    }
    if (ended == child) {
      daemon_pid = 0;
      result = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
  }
  return result;
}

int main(int argc, char **argv) {
  if (argc < 4 || (strcmp(argv[2], "ro") != 0 && strcmp(argv[2], "rw") != 0)) {
    fprintf(stderr, "usage: fnrun-virtiofsd SOURCE ro|rw VIRTIOFSD [ARGS...]\n");
    return 2;
  }
  const char *source = argv[1];
  int read_only = strcmp(argv[2], "ro") == 0;
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) fail("prctl");
  if (getppid() == 1) return 125; /* fnrun is already gone */

  uid_t uid = geteuid();
  gid_t gid = getegid();
  if (uid != 0) {
    if (unshare(CLONE_NEWUSER) < 0) fail("unshare(CLONE_NEWUSER) (are unprivileged user namespaces off?)");
    char map[64];
    write_file("/proc/self/setgroups", "deny");
    snprintf(map, sizeof map, "0 %u 1\n", (unsigned)uid);
    write_file("/proc/self/uid_map", map);
    snprintf(map, sizeof map, "0 %u 1\n", (unsigned)gid);
    write_file("/proc/self/gid_map", map);
  }
  if (unshare(CLONE_NEWNS) < 0) fail("unshare(CLONE_NEWNS)");
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) fail("making mounts private");
  if (read_only) {
    if (mount(source, source, NULL, MS_BIND | MS_REC, NULL) < 0) fail("bind-mounting the folder");
    if (make_read_only_recursively(source) < 0)
      fail(errno == ENOSYS ? "making the folder read-only (mount_setattr needs Linux 5.12 or newer)"
                           : "making the folder read-only");
  }
  return run_and_reap(argv + 3);
}
